"""Encode LLaMA-Factory's mllm_demo rows through LLaMA-Factory 0.9.5's qwen2_vl template and plugin (fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root, on a tiny Qwen2-VL folder made by
tuneforge (its tokenizer and image processor are what the fixture depends on):

    tuneforge make-tiny --arch qwen2_vl --out /tmp/tiny_qwen2_vl
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_demo.py /tmp/tiny_qwen2_vl

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


def _examples(rows: list[dict]) -> dict[str, list]:
    """Rows in LLaMA-Factory's internal form: prompt turns, the last response, media paths under the data folder."""
    out: dict[str, list] = {k: [] for k in ("_prompt", "_response", "_system", "_tools", "_images", "_videos")}
    out["_audios"] = []
    for row in rows:
        messages = row["messages"]
        out["_prompt"].append(messages[:-1])
        out["_response"].append(messages[-1:])
        out["_system"].append("")
        out["_tools"].append("")
        out["_images"].append([str(DATA / p) for p in row["images"]])
        out["_videos"].append([])
        out["_audios"].append([])
    return out


def lf_qwen2_vl(model: str, cutoff: int) -> dict:
    """LLaMA-Factory's processor arguments (template, tokenizer, processor, data_args) for the qwen2_vl template on
    the tiny model at `model`, with torchvision hidden and the PIL image processor (also used by
    encode_mllm_preferences.py)."""
    sys.modules["torchvision"] = None
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(model)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(model)
    processor = SimpleNamespace(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_max_pixels=768 * 768,
        image_min_pixels=32 * 32,
    )
    data_args = DataArguments(template="qwen2_vl", cutoff_len=cutoff)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    return {"template": template, "tokenizer": tokenizer, "processor": processor, "data_args": data_args}


def main() -> int:
    kwargs = lf_qwen2_vl(sys.argv[1], CUTOFF)
    from llamafactory.data.processor import SupervisedDatasetProcessor

    image_processor = kwargs["processor"].image_processor
    encoder = SupervisedDatasetProcessor(**kwargs)
    rows = json.loads((DATA / "mllm_demo.json").read_text(encoding="utf-8"))
    encoded = encoder.preprocess_dataset(_examples(rows))
    out = {
        "template": "qwen2_vl",
        "cutoff_len": CUTOFF,
        "image_processor": {k: image_processor.to_dict()[k] for k in ("patch_size", "merge_size", "size")},
        "rows": [
            {"input_ids": ids, "labels": labels}
            for ids, labels in zip(encoded["input_ids"], encoded["labels"], strict=True)
        ],
    }
    target = ROOT / "tests" / "fixtures" / "lf_mllm_demo_ids.json"
    target.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(out['rows'])} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
