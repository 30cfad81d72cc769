"""Shared helpers for the training tests: hand-made token datasets and configs for tiny models."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

IGNORE = -100


@cache
def tokenizer_of(model: Path) -> Any:
    """The tokenizer of a tiny model folder, loaded once per test session (loading the 150k vocab takes seconds).

    Shared between tests: do not modify it (`run_sft` with hand-made `TrainData` leaves it as it is).
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def identity_rows(tokenizer: Any, n: int = 16, seed: int = 0) -> list[dict[str, list[int]]]:
    """Chat rows "who are you N?" -> "I am Forge N." with the prompt masked, built with the tokenizer's template."""
    return chat_rows(tokenizer, [(f"Who are you {i + seed}?", f"I am Forge {i + seed}.") for i in range(n)])


def chat_rows(tokenizer: Any, pairs: list[tuple[str, str]]) -> list[dict[str, list[int]]]:
    """One (question, answer) chat row per pair, in the tokenizer's template, with the prompt masked."""
    rows = []
    for question, reply in pairs:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(f"{reply}<|im_end|>\n", add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": p_ids + a_ids, "labels": [IGNORE] * len(p_ids) + a_ids})
    return rows


def train_data(tokenizer: Any, n: int = 16, eval_n: int = 0, packed: bool = False) -> Any:
    """A `TrainData` of identity rows with a padding (or flattening) collator."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    from tuneforge.train.sft import TrainData

    rows = identity_rows(tokenizer, n)
    collator = (
        DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)
        if packed
        else DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, padding=True)
    )
    eval_ds = Dataset.from_list(identity_rows(tokenizer, eval_n, seed=1000)) if eval_n else None
    return TrainData(train=Dataset.from_list(rows), eval=eval_ds, collator=collator)


def tiny_config(model: Path, out: Path, **overrides: Any) -> Any:
    """A config training `model` into `out` on CPU in fp32 with deterministic, quick settings."""
    from tuneforge.config import load_config

    base = {
        "model_name_or_path": str(model),
        "stage": "sft",
        "finetuning_type": "lora",
        "template": None,
        "output_dir": str(out),
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "max_steps": 4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_gradient_checkpointing": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    base.update(overrides)
    return load_config({k: v for k, v in base.items() if v is not None})


def read_log(out: Path) -> list[dict[str, Any]]:
    """Records of `out/trainer_log.jsonl`."""
    path = out / "trainer_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_identity_dataset(folder: Path, n: int = 16) -> Path:
    """An alpaca dataset `ids` of n "Who are you i?" rows with its dataset_info.json in `folder` (returned)."""
    rows = [{"instruction": f"Who are you {i}?", "input": "", "output": f"I am Forge {i}."} for i in range(n)]
    (folder / "ids.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({"ids": {"file_name": "ids.json"}}))
    return folder


def dist_args(model: Path, data: Path, kind: str) -> list[str]:
    """CLI overrides of a 3-step fp32 run on `write_identity_dataset` data in a fixed order, comparable between one
    process and a distributed launch of the same global batch (the distributed tests add the accumulation)."""
    return [
        f"model_name_or_path={model}",
        "dataset=ids",
        f"dataset_dir={data}",
        "template=qwen",
        f"finetuning_type={kind}",
        f"learning_rate={1e-2 if kind == 'lora' else 1e-3}",
        "max_steps=3",
        "save_steps=1000",
        "logging_steps=1",
        "per_device_train_batch_size=2",
        "lora_dropout=0",
        "disable_shuffling=true",
        "disable_gradient_checkpointing=true",
        "disable_tqdm=true",
        "report_to=none",
    ]
