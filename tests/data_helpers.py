"""Shared helpers for the data tests: configs pointing at LF demo data or small files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LF_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "lf-data"


def data_config(tmp_path: Path, **keys: Any) -> Any:
    """A validated config for data preparation (dataset_dir defaults to the LF demo data)."""
    from tuneforge.config import load_config

    values = {
        "model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct",
        "stage": "sft",
        "do_train": True,
        "template": "qwen",
        "dataset_dir": str(LF_DATA),
        "cutoff_len": 1024,
        "output_dir": str(tmp_path / "out"),
    }
    values.update(keys)
    return load_config(values)


def write_json(path: Path, rows: Any) -> Path:
    """Write rows as a JSON array (UTF-8)."""
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def alpaca_rows(n: int, output: str = "Answer {i}.") -> list[dict[str, str]]:
    """`n` small distinct alpaca rows."""
    return [{"instruction": f"Question {i}?", "input": "", "output": output.format(i=i)} for i in range(n)]
