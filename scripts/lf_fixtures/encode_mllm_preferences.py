"""Encode preference and KTO rows made from LLaMA-Factory's mllm_demo through LLaMA-Factory 0.9.5's qwen2_vl
template and plugin (fixture generator for dpo / kto on images).

Run with LLaMA-Factory's own environment (not in CI), from the repository root, on a tiny Qwen2-VL folder made by
tuneforge:

    tuneforge make-tiny --arch qwen2_vl --out /tmp/tiny_qwen2_vl
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_preferences.py /tmp/tiny_qwen2_vl

Each mllm_demo row becomes a preference row (its last answer chosen, `REJECTED` rejected) and a KTO row (desirable
for even rows); LLaMA-Factory's pairwise and feedback processors write the ids and labels into
`tests/fixtures/lf_mllm_preference_ids.json`, which `tests/test_multimodal_preference.py` compares against
tuneforge (it builds the same rows from mllm_demo.json). Set up as
encode_mllm_demo.py does (`lf_qwen2_vl`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "lf-data"
CUTOFF = 2048
REJECTED = "I cannot tell from this picture."


def _internal(prompts: list, responses: list, images: list) -> dict[str, list]:
    n = len(prompts)
    return {
        "_prompt": prompts,
        "_response": responses,
        "_system": [""] * n,
        "_tools": [""] * n,
        "_images": [[str(DATA / p) for p in row] for row in images],
        "_videos": [[] for _ in range(n)],
        "_audios": [[] for _ in range(n)],
    }


def main() -> int:
    from encode_mllm_demo import lf_qwen2_vl

    kwargs = lf_qwen2_vl(sys.argv[1], CUTOFF)
    from llamafactory.data.processor import FeedbackDatasetProcessor, PairwiseDatasetProcessor

    rows = json.loads((DATA / "mllm_demo.json").read_text(encoding="utf-8"))
    prompts = [row["messages"][:-1] for row in rows]
    answers = [row["messages"][-1] for row in rows]
    images = [row["images"] for row in rows]
    empty = {"role": "assistant", "content": ""}
    rejected = {"role": "assistant", "content": REJECTED}
    pairs = PairwiseDatasetProcessor(**kwargs).preprocess_dataset(
        _internal(prompts, [[a, rejected] for a in answers], images)
    )
    kto_responses = [[a, empty] if i % 2 == 0 else [empty, a] for i, a in enumerate(answers)]
    kto = FeedbackDatasetProcessor(**kwargs).preprocess_dataset(_internal(prompts, kto_responses, images))
    keys = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")
    out = {
        "template": "qwen2_vl",
        "cutoff_len": CUTOFF,
        "rejected": REJECTED,
        "pairwise": [dict(zip(keys, values, strict=True)) for values in zip(*(pairs[k] for k in keys), strict=True)],
        "kto": [
            {"input_ids": ids, "labels": labels, "kto_tags": tag}
            for ids, labels, tag in zip(kto["input_ids"], kto["labels"], kto["kto_tags"], strict=True)
        ],
    }
    target = ROOT / "tests" / "fixtures" / "lf_mllm_preference_ids.json"
    target.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(out['pairwise'])} pairs, {len(out['kto'])} KTO rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
