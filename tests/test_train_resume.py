"""Resuming from a checkpoint continues exactly as if training had never stopped (CPU fp32, within 1e-5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from train_helpers import read_log, tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run(tiny_qwen2: Path, tmp_path: Path) -> None:
    """Dropout on and shuffling on across an epoch boundary, so data order and RNG must be restored too."""
    from safetensors.torch import load_file

    from tuneforge.errors import TuneforgeError
    from tuneforge.train.sft import run_sft

    tokenizer = tokenizer_of(tiny_qwen2)
    settings = {"max_steps": 5, "save_strategy": "steps", "save_steps": 2, "lora_dropout": 0.1}
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_sft(tiny_config(tiny_qwen2, full, **settings), train_data(tokenizer, 12), tokenizer)

    resumed.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")  # as if killed after the step-2 save
    (resumed / "trainer_log.jsonl").write_text((full / "trainer_log.jsonl").read_text())  # incl. steps 3-5
    run_sft(tiny_config(tiny_qwen2, resumed, **settings), train_data(tokenizer, 12), tokenizer)

    losses_full = [r["loss"] for r in read_log(full) if "loss" in r]
    losses_resumed = [r["loss"] for r in read_log(resumed) if "loss" in r]
    assert len(losses_full) == 5 and losses_resumed == pytest.approx(losses_full, abs=1e-5)
    wa, wb = load_file(full / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=key)

    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(full / "checkpoint-2", other / "checkpoint-2")
    with pytest.raises(TuneforgeError, match="data changed"):
        run_sft(tiny_config(tiny_qwen2, other, **settings), train_data(tokenizer, 10), tokenizer)
