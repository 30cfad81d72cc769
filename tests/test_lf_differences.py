"""Pins for the deliberate differences from LLaMA-Factory listed in README ("Differences from LLaMA-Factory")."""

from __future__ import annotations

import json
from pathlib import Path

from data_helpers import data_config

IGNORE = -100


def test_newline_after_end_of_turn_is_not_trained(qwen_tokenizer, tmp_path: Path) -> None:
    """LLaMA-Factory trains `<|im_end|>\\n`; tuneforge trains `<|im_end|>` and not the newline after it."""
    from tuneforge.data.pipeline import prepare_dataset

    turns = [["Hi", "Hello!"], ["Bye", "Goodbye!"]]
    rows = [{"instruction": turns[1][0], "input": "", "output": turns[1][1], "history": [turns[0]]}]
    (tmp_path / "chat.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(
        json.dumps(
            {
                "chat": {
                    "file_name": "chat.json",
                    "columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history"},
                }
            }
        )
    )
    cfg = data_config(tmp_path, dataset="chat", dataset_dir=str(tmp_path))
    row = prepare_dataset(cfg, qwen_tokenizer).train[0]
    ids, labels = row["input_ids"], row["labels"]
    end = qwen_tokenizer.convert_tokens_to_ids("<|im_end|>")
    newline = qwen_tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    ends = [i for i, t in enumerate(ids) if t == end and labels[i] == end]
    assert len(ends) == 2  # both answers' end-of-turn tokens are trained, so the model learns to stop
    assert ids[ends[0] + 1] == newline and labels[ends[0] + 1] == IGNORE  # the newline after it is not
    assert ends[1] == len(ids) - 1  # and the last turn ends at its end-of-turn token


def test_kto_kl_pairs_do_not_restart_at_batch_boundaries(shared_dir: Path, qwen_tokenizer, tmp_path: Path) -> None:
    """LLaMA-Factory pairs row i with row i-1 inside each block of `preprocessing_batch_size` rows (a block's first
    row with that block's last); tuneforge pairs across blocks too."""
    from tuneforge.data.pipeline import prepare_dataset

    cfg = data_config(
        tmp_path, stage="kto", dataset="kto_en_demo", max_samples=4, preprocessing_batch_size=2, cutoff_len=8192
    )
    train = prepare_dataset(cfg, qwen_tokenizer).train

    def answer(row: dict, prefix: str = "") -> list[int]:
        return [t for t, lab in zip(row[f"{prefix}input_ids"], row[f"{prefix}labels"], strict=True) if lab != IGNORE]

    assert answer(train[2], "kl_") == answer(train[1])  # LLaMA-Factory: row 3's (the last of block [2, 3])
    assert answer(train[2], "kl_") != answer(train[3])
    assert answer(train[0], "kl_") == answer(train[3])  # the first row takes the last one's, in both


def test_evaluation_rows_are_not_packed(shared_dir: Path, qwen_tokenizer, tmp_path: Path) -> None:
    """LLaMA-Factory packs evaluation rows too; tuneforge packs only the training split."""
    from tuneforge.data.pipeline import prepare_dataset

    cfg = data_config(tmp_path, dataset="identity", max_samples=40, packing=True, val_size=8, cutoff_len=256)
    splits = prepare_dataset(cfg, qwen_tokenizer)
    assert len(splits.eval) == 8  # one row per held-out sample
    assert len(splits.train) < 32  # 32 samples packed into fewer rows


def test_tokens_seen_are_counted_by_default(tmp_path: Path) -> None:
    """LLaMA-Factory leaves `include_num_input_tokens_seen: no`; tuneforge counts non-padding tokens for tokens/s."""
    from tuneforge.config import load_config
    from tuneforge.train.args import build_training_args

    args, _ = build_training_args(load_config({"output_dir": str(tmp_path)}, paths=False), cuda=False)
    assert args.include_num_input_tokens_seen == "non_padding"


def test_eval_only_is_for_pt_and_sft() -> None:
    """LLaMA-Factory also evaluates rm/dpo/kto without training; tuneforge refuses it for those stages."""
    import pytest

    from tuneforge.config import load_config
    from tuneforge.errors import ConfigError
    from tuneforge.train.modes import check_modes

    with pytest.raises(ConfigError, match="stage pt or sft only"):
        check_modes(load_config({"do_eval": True, "stage": "rm", "val_size": 2}, paths=False))
