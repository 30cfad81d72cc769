"""GaLore, APOLLO, BAdam, Adam-mini and Muon train a tiny model end to end, and resume exactly where they stopped."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from train_helpers import read_log, tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")

OPTIMIZERS = {
    "galore": {"use_galore": True, "galore_rank": 4, "galore_update_interval": 2},
    "galore-layerwise": {"use_galore": True, "galore_rank": 4, "galore_layerwise": True},
    "apollo": {"use_apollo": True, "apollo_rank": 4},
    "apollo-layerwise": {"use_apollo": True, "apollo_rank": 4, "apollo_layerwise": True, "apollo_proj": "svd"},
    "badam-layer": {"use_badam": True, "badam_switch_interval": 2},
    "badam-ratio": {"use_badam": True, "badam_mode": "ratio", "badam_update_ratio": 0.5},
    "adam-mini": {"use_adam_mini": True},
    "muon": {"use_muon": True},
}


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_log(out) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_trains_and_the_loss_falls(name: str, tiny_qwen2: Path, tmp_path: Path) -> None:
    """Four full fine-tuning steps on the same four rows: each optimizer brings the loss down at every step."""
    from tuneforge.train.sft import run_sft

    tokenizer = tokenizer_of(tiny_qwen2)
    cfg = tiny_config(tiny_qwen2, tmp_path, finetuning_type="full", max_steps=4, **OPTIMIZERS[name])
    run_sft(cfg, train_data(tokenizer, 4), tokenizer)
    losses = _losses(tmp_path)
    assert len(losses) == 4 and all(b < a for a, b in itertools.pairwise(losses)), losses
    assert (tmp_path / "model.safetensors").is_file()


RESUMED = {
    "galore": {**OPTIMIZERS["galore"], "galore_proj_type": "full"},  # projector refreshed after the checkpoint
    "galore-layerwise": OPTIMIZERS["galore-layerwise"],
    "badam-random": {"use_badam": True, "badam_switch_interval": 2, "badam_switch_mode": "random"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RESUMED))
def test_optimizer_state_survives_kill_and_resume(name: str, tiny_qwen2: Path, tmp_path: Path) -> None:
    """Killed after the step-2 checkpoint, the run continues with the same losses and weights as one that never
    stopped: GaLore's projectors, the per-weight optimizers of layer-wise GaLore, BAdam's active block, switch
    order and float32 block copy all come back from the checkpoint."""
    from safetensors.torch import load_file

    from tuneforge.train.sft import run_sft

    tokenizer = tokenizer_of(tiny_qwen2)
    settings = {"finetuning_type": "full", "max_steps": 4, "save_strategy": "steps", "save_steps": 2, **RESUMED[name]}
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_sft(tiny_config(tiny_qwen2, full, **settings), train_data(tokenizer, 8), tokenizer)

    resumed.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")  # as if killed after the step-2 save
    (resumed / "trainer_log.jsonl").write_text((full / "trainer_log.jsonl").read_text())
    run_sft(tiny_config(tiny_qwen2, resumed, **settings), train_data(tokenizer, 8), tokenizer)

    assert len(_losses(full)) == 4 and _losses(resumed) == pytest.approx(_losses(full), abs=1e-5)
    wa, wb = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=key)
