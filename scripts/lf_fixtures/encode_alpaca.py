"""Encode a few alpaca_en_demo rows through LLaMA-Factory 0.9.5's plain-text templates (fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root:

    PYTHONPATH=src /work/lfvenv/bin/python scripts/lf_fixtures/encode_alpaca.py

It uses tuneforge only to locate the offline Qwen2 tokenizer folder (given Llama-2 style `<s>` / `</s>` bos and
eos special tokens), then LLaMA-Factory's template and
supervised processor to write input_ids and labels for each template into
`tests/fixtures/lf_alpaca_ids.json`, which `tests/test_lf_fixture.py` compares against tuneforge.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = 4
TEMPLATES = ("default", "alpaca", "vicuna", "llama2", "mistral", "zephyr", "chatml", "empty", "qwen")
CUTOFF = 1024
SPECIALS = {"bos_token": "<s>", "eos_token": "</s>"}


def _tokenizer_dir() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from tuneforge.models.tokenizer import tokenizer_dir

    return str(tokenizer_dir("qwen2"))


def _examples(rows: list[dict]) -> dict[str, list]:
    """Rows in LLaMA-Factory's internal form (its alpaca converter joins instruction and input with a newline)."""
    prompts, responses = [], []
    for row in rows:
        query = "\n".join(part for part in (row["instruction"], row.get("input", "")) if part)
        prompts.append([{"role": "user", "content": query}])
        responses.append([{"role": "assistant", "content": row["output"]}])
    empty = [[] for _ in rows]
    return {
        "_prompt": prompts,
        "_response": responses,
        "_system": ["" for _ in rows],
        "_tools": ["" for _ in rows],
        "_images": empty,
        "_videos": empty,
        "_audios": empty,
    }


def main() -> int:
    sys.modules["torchvision"] = None  # the reference env's torchvision does not match its torch; LF needs none here
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    folder = _tokenizer_dir()
    rows = json.loads((ROOT.parent / "shared" / "lf-data" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    rows = sorted(rows[:40], key=lambda r: len(r["instruction"]) + len(r["output"]))[:ROWS]
    out: dict = {"tokenizer": "qwen2", "specials": SPECIALS, "cutoff_len": CUTOFF, "rows": rows, "templates": {}}
    for name in TEMPLATES:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.add_special_tokens(SPECIALS)  # Llama-2 style bos/eos, so llama2 and mistral use real ones
        data_args = DataArguments(template=name, cutoff_len=CUTOFF)
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        processor = SupervisedDatasetProcessor(
            template=template, tokenizer=tokenizer, processor=None, data_args=data_args
        )
        encoded = processor.preprocess_dataset(_examples(rows))
        out["templates"][name] = [
            {"input_ids": ids, "labels": labels}
            for ids, labels in zip(encoded["input_ids"], encoded["labels"], strict=True)
        ]
    target = ROOT / "tests" / "fixtures" / "lf_alpaca_ids.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(TEMPLATES)} templates x {len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
