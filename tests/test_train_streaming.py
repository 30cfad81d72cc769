"""`streaming: true` trains pt and sft from a streamed local file with `max_steps` (packing where the stage packs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import load_config


def _stream_cfg(model: Path, data_dir: Path, out: Path, stage: str, **values: object):
    base = {
        "model_name_or_path": str(model),
        "template": "qwen3",
        "dataset_dir": str(data_dir),
        "dataset": "mine",
        "stage": stage,
        "do_train": True,
        "streaming": True,
        "max_steps": 3,
        "cutoff_len": 32,
        "output_dir": str(out),
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "no",
        "disable_tqdm": True,
        "disable_gradient_checkpointing": True,
    }
    return load_config({**base, **values})


@pytest.fixture
def local_file(tmp_path: Path) -> Path:
    """A JSON-lines file of 40 alpaca rows, registered as `mine` in its own dataset_info.json."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": f"Count to {i}.", "input": "", "output": " ".join(map(str, range(i)))} for i in range(40)]
    (data / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.jsonl"}}))
    return data


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "extra"),
    [("sft", {}), ("sft", {"neat_packing": True}), ("pt", {}), ("sft", {"val_size": 4, "eval_strategy": "steps"})],
)
def test_streamed_local_file_trains(
    tiny_qwen3: Path, local_file: Path, tmp_path: Path, stage: str, extra: dict
) -> None:
    from train_helpers import read_log
    from tuneforge.train.runner import run

    out = tmp_path / "out"
    metrics = run(_stream_cfg(tiny_qwen3, local_file, out, stage, eval_steps=2, **extra))
    losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert (out / "adapter_model.safetensors").exists()
    if "val_size" in extra:
        assert metrics["eval_loss"] > 0


def test_streaming_without_max_steps_is_refused() -> None:
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match="max_steps"):
        load_config({"streaming": True}, paths=False)
