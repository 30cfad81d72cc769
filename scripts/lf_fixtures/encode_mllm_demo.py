"""Encode LLaMA-Factory's mllm_demo rows through LLaMA-Factory 0.9.5's template and media plugin (fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root, on a tiny model folder made by
tuneforge (its tokenizer and image processor are what the fixture depends on), naming the template:

    tuneforge make-tiny --arch qwen2_vl --out /tmp/tiny_qwen2_vl
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_demo.py /tmp/tiny_qwen2_vl
    tuneforge make-tiny --arch llava --out /tmp/tiny_llava
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_demo.py /tmp/tiny_llava llava

(The tiny Gemma 3 vision-language model is `--arch gemma3_vl`; its template is gemma3.) Templates llava, llava_next
and gemma3 load the real transformers processor (it needs no torchvision); intern_vl,
like qwen2_vl, gets a plain object holding the image processor, tokenizer and `image_seq_length`. The fixture is
`tests/fixtures/lf_mllm_demo_ids.json` for qwen2_vl and `lf_mllm_demo_ids_<template>.json` for the others; for
qwen2_vl it also encodes mllm_video_demo (each `<video>` sized from the video's stream metadata and the video
processor's saved settings, default `video_fps` / `video_maxlen` / `video_max_pixels` / `video_min_pixels`) into
`tests/fixtures/lf_mllm_video_demo_ids.json`.

LLaMA-Factory's supervised processor and Qwen2-VL plugin expand each `<image>` with the image processor (default
`image_max_pixels` / `image_min_pixels`) and write input_ids and labels for every row into
`tests/fixtures/lf_mllm_demo_ids.json`, which `tests/test_multimodal.py` compares against tuneforge.
The reference environment's torchvision does not match its torch, so it is hidden: transformers then uses its
PIL image processor, and the processor LLaMA-Factory reads is given as a plain object holding the image processor
and tokenizer (all the plugin uses for images).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "lf-data"
CUTOFF = 2048


def _examples(rows: list[dict], kind: str = "images") -> dict[str, list]:
    """Rows in LLaMA-Factory's internal form: prompt turns, the last response, the `kind` media paths under the data
    folder (the other kinds empty)."""
    out: dict[str, list] = {k: [] for k in ("_prompt", "_response", "_system", "_tools", "_images", "_videos")}
    out["_audios"] = []
    for row in rows:
        messages = row["messages"]
        out["_prompt"].append(messages[:-1])
        out["_response"].append(messages[-1:])
        out["_system"].append("")
        out["_tools"].append("")
        for name in ("images", "videos", "audios"):
            out[f"_{name}"].append([str(DATA / p) for p in row[name]] if name == kind else [])
    return out


def _image_processor_class(template: str) -> type:
    """The PIL image processor (AutoImageProcessor asks for torchvision for GOT-OCR2/InternVL in LF's transformers)."""
    if template == "intern_vl":
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

        return GotOcr2ImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil


def _share_smart_resize() -> None:
    """LLaMA-Factory sizes videos with `smart_resize` from transformers' torchvision-backed Qwen2-VL image processor
    module; with torchvision hidden, that module is stood in for by the PIL one, which holds the same function."""
    from types import ModuleType

    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

    stand_in = ModuleType("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    stand_in.smart_resize = pil.smart_resize
    sys.modules[stand_in.__name__] = stand_in


def _processor(model: str, template: str, tokenizer: object) -> object:
    """What LLaMA-Factory's loader hands the plugin: the processor with the run's tokenizer and image limits."""
    from transformers import AutoProcessor

    if template in ("qwen2_vl", "intern_vl"):
        settings = json.loads((Path(model) / "processor_config.json").read_text()) if template == "intern_vl" else {}
        image_processor = _image_processor_class(template).from_pretrained(model)
        processor = SimpleNamespace(image_processor=image_processor, image_seq_length=settings.get("image_seq_length"))
    else:
        processor = AutoProcessor.from_pretrained(model)
    for key, value in {"tokenizer": tokenizer, "image_max_pixels": 768 * 768, "image_min_pixels": 32 * 32}.items():
        setattr(processor, key, value)
    for key in ("image_do_pan_and_scan", "crop_to_patches"):  # LF's defaults
        setattr(processor, key, False)
    if template == "qwen2_vl":  # the video processor's saved settings and LF's default video limits
        video_config = json.loads((Path(model) / "video_preprocessor_config.json").read_text(encoding="utf-8"))
        processor.video_processor = SimpleNamespace(**video_config)
        limits = {"video_max_pixels": 256 * 256, "video_min_pixels": 16 * 16, "video_fps": 2.0, "video_maxlen": 128}
        for key, value in limits.items():
            setattr(processor, key, value)
    return processor


def lf_processor_args(model: str, cutoff: int, name: str = "qwen2_vl") -> dict:
    """LLaMA-Factory's processor arguments (template, tokenizer, processor, data_args) for template `name` on the
    tiny model at `model`, with torchvision hidden and PIL image processors."""
    sys.modules["torchvision"] = None
    _share_smart_resize()
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    processor = _processor(model, name, tokenizer)
    data_args = DataArguments(template=name, cutoff_len=cutoff)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    return {"template": template, "tokenizer": tokenizer, "processor": processor, "data_args": data_args}


def lf_qwen2_vl(model: str, cutoff: int) -> dict:
    """`lf_processor_args` for the qwen2_vl template (also used by encode_mllm_preferences.py)."""
    return lf_processor_args(model, cutoff, "qwen2_vl")


def main() -> int:
    name = sys.argv[2] if len(sys.argv) > 2 else "qwen2_vl"
    kwargs = lf_processor_args(sys.argv[1], CUTOFF, name)
    from llamafactory.data.processor import SupervisedDatasetProcessor

    encoder = SupervisedDatasetProcessor(**kwargs)
    sets = [("mllm_demo", "images")] + ([("mllm_video_demo", "videos")] if name == "qwen2_vl" else [])
    for dataset, kind in sets:
        rows = json.loads((DATA / f"{dataset}.json").read_text(encoding="utf-8"))
        out = _fixture(kwargs["processor"], name, encoder.preprocess_dataset(_examples(rows, kind)), kind)
        suffix = "" if name == "qwen2_vl" else f"_{name}"
        target = ROOT / "tests" / "fixtures" / f"lf_{dataset}_ids{suffix}.json"
        target.write_text(json.dumps(out) + "\n", encoding="utf-8")
        print(f"wrote {target} ({len(out['rows'])} rows)")
    return 0


def _fixture(processor: object, name: str, encoded: dict, kind: str) -> dict:
    settings = processor.image_processor.to_dict()
    out = {
        "template": name,
        "cutoff_len": CUTOFF,
        "image_processor": {k: settings[k] for k in ("patch_size", "merge_size", "size") if k in settings},
        "rows": [
            {"input_ids": ids, "labels": labels}
            for ids, labels in zip(encoded["input_ids"], encoded["labels"], strict=True)
        ],
    }
    if kind == "videos":
        video = vars(processor.video_processor)
        out["video_processor"] = {k: video[k] for k in ("patch_size", "temporal_patch_size", "size")}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
