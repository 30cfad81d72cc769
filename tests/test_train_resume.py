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


def _reward_folder(model: Path, folder: Path) -> Path:
    """A `reward_model_type: full` reward model: the tiny model's folder plus a seeded value head."""
    from tuneforge.train.value_head import ValueHead, save_value_head

    shutil.copytree(model, folder)
    torch.manual_seed(1)
    save_value_head(ValueHead(64), folder)
    return folder


def _ppo_config(model: Path, out: Path, data: Path, reward: Path, **overrides) -> object:
    return tiny_config(
        model, out, stage="ppo", template="qwen", dataset="alpaca", dataset_dir=str(data), cutoff_len=32,
        per_device_train_batch_size=2, max_steps=3, max_new_tokens=3, reward_model=str(reward),
        reward_model_type="full", save_strategy="steps", save_steps=2, **overrides,
    )  # fmt: skip


@pytest.mark.slow
def test_ppo_resumes_where_it_stopped(tiny_qwen2: Path, tmp_path: Path) -> None:
    """Killed after the step-2 checkpoint, a PPO run continues with the same rollouts, losses and weights; the
    checkpoint holds the value head and the optimizer; a non-empty output_dir without a checkpoint is refused."""
    from safetensors.torch import load_file

    from trajectory_cases import write_data
    from tuneforge.errors import TuneforgeError
    from tuneforge.train import run_training

    data, reward = write_data(tmp_path / "data"), _reward_folder(tiny_qwen2, tmp_path / "reward")
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_training(_ppo_config(tiny_qwen2, full, data, reward))
    assert {"value_head.safetensors", "ppo_state.pt", "adapter_model.safetensors"} <= {
        p.name for p in (full / "checkpoint-2").iterdir()
    }
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")
    (resumed / "trainer_log.jsonl").write_text((full / "trainer_log.jsonl").read_text())  # incl. step 3
    run_training(_ppo_config(tiny_qwen2, resumed, data, reward))

    keys = ("loss", "rewards/mean", "objective/kl", "ppo/value_loss")
    records = [r[k] for r in read_log(full) if "loss" in r for k in keys]
    again = [r[k] for r in read_log(resumed) if "loss" in r for k in keys]
    assert len(records) == 3 * len(keys) and again == pytest.approx(records, abs=1e-5)
    for name in ("adapter_model.safetensors", "value_head.safetensors"):
        wa, wb = load_file(full / name), load_file(resumed / name)
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=key)

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(TuneforgeError, match="not empty"):
        run_training(_ppo_config(tiny_qwen2, stray, data, reward))
