"""Encode LLaMA-Factory's mllm_demo and mllm_video_demo rows through LLaMA-Factory 0.9.5's qwen2_vl template and plugin
(fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root, on a tiny Qwen2-VL folder made by
tuneforge (its tokenizer and image processor are what the fixture depends on):

    tuneforge make-tiny --arch qwen2_vl --out /tmp/tiny_qwen2_vl
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_demo.py /tmp/tiny_qwen2_vl

LLaMA-Factory's supervised processor and Qwen2-VL plugin expand each `<image>` with the image processor (default
`image_max_pixels` / `image_min_pixels`) and each `<video>` from the video's stream metadata and the video
processor's settings (default `video_fps`, `video_maxlen`, `video_max_pixels`, `video_min_pixels`), and write
input_ids and labels for every row into `tests/fixtures/lf_mllm_demo_ids.json` and
`tests/fixtures/lf_mllm_video_demo_ids.json`, which `tests/test_multimodal.py` and `tests/test_video.py` compare
against tuneforge.
The reference environment's torchvision does not match its torch, so it is hidden: transformers then uses its
PIL image processor, and the processor LLaMA-Factory reads is given as a plain object holding the image processor
and tokenizer (all the plugin uses for images) and the video processor's saved settings (all it reads to size
videos).
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


def _share_smart_resize() -> None:
    """LLaMA-Factory sizes videos with `smart_resize` from transformers' torchvision-backed Qwen2-VL image processor
    module; with torchvision hidden, that module is stood in for by the PIL one, which holds the same function."""
    from types import ModuleType

    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

    stand_in = ModuleType("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    stand_in.smart_resize = pil.smart_resize
    sys.modules[stand_in.__name__] = stand_in


def lf_qwen2_vl(model: str, cutoff: int) -> dict:
    """LLaMA-Factory's processor arguments (template, tokenizer, processor, data_args) for the qwen2_vl template on
    the tiny model at `model`, with torchvision hidden and the PIL image processor (also used by
    encode_mllm_preferences.py)."""
    sys.modules["torchvision"] = None
    _share_smart_resize()
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(model)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(model)
    video_config = json.loads((Path(model) / "video_preprocessor_config.json").read_text(encoding="utf-8"))
    processor = SimpleNamespace(
        image_processor=image_processor,
        video_processor=SimpleNamespace(**video_config),
        tokenizer=tokenizer,
        image_max_pixels=768 * 768,
        image_min_pixels=32 * 32,
        video_max_pixels=256 * 256,
        video_min_pixels=16 * 16,
        video_fps=2.0,
        video_maxlen=128,
    )
    data_args = DataArguments(template="qwen2_vl", cutoff_len=cutoff)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    return {"template": template, "tokenizer": tokenizer, "processor": processor, "data_args": data_args}


def main() -> int:
    kwargs = lf_qwen2_vl(sys.argv[1], CUTOFF)
    from llamafactory.data.processor import SupervisedDatasetProcessor

    image_processor = kwargs["processor"].image_processor
    video_config = vars(kwargs["processor"].video_processor)
    encoder = SupervisedDatasetProcessor(**kwargs)
    for dataset, kind in (("mllm_demo", "images"), ("mllm_video_demo", "videos")):
        rows = json.loads((DATA / f"{dataset}.json").read_text(encoding="utf-8"))
        encoded = encoder.preprocess_dataset(_examples(rows, kind))
        out = {
            "template": "qwen2_vl",
            "cutoff_len": CUTOFF,
            "image_processor": {k: image_processor.to_dict()[k] for k in ("patch_size", "merge_size", "size")},
            "rows": [
                {"input_ids": ids, "labels": labels}
                for ids, labels in zip(encoded["input_ids"], encoded["labels"], strict=True)
            ],
        }
        if kind == "videos":
            out["video_processor"] = {k: video_config[k] for k in ("patch_size", "temporal_patch_size", "size")}
        target = ROOT / "tests" / "fixtures" / f"lf_{dataset}_ids.json"
        target.write_text(json.dumps(out) + "\n", encoding="utf-8")
        print(f"wrote {target} ({len(out['rows'])} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
