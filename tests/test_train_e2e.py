"""End-to-end training runs (slow): the real CLI on tiny models, learning proof, and SIGKILL + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train_helpers import read_log

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")

USER_CONFIG = "compat/user-configs/qwen3_lora_sft.yaml"
SHORT = ["max_samples=8", "max_steps=2", "cutoff_len=128", "logging_steps=1", "disable_tqdm=true"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "extra",
    [[], ["stage=pt", "dataset=c4_demo"], ["finetuning_type=full"], ["finetuning_type=freeze"]],
    ids=["lora-sft", "pt", "full", "freeze"],
)
def test_users_config_trains_end_to_end(extra: list[str], shared_dir: Path, tiny_qwen3: Path, tmp_path: Path) -> None:
    """The users' LF config with model/template/dataset_dir overridden (plus, to stay short: max_samples,
    max_steps, cutoff_len, logging_steps, output_dir). Its `bf16: true` falls back to float32 on CPU with a note.
    """
    out = tmp_path / "out"
    overrides = [f"model_name_or_path={tiny_qwen3}", "template=qwen3", f"dataset_dir={shared_dir / 'lf-data'}"]
    result = _cli(str(shared_dir / USER_CONFIG), *overrides, *SHORT, *extra, f"output_dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "float32" in result.stderr  # the bf16 note
    weights = "model.safetensors" if extra and "finetuning_type" in extra[0] else "adapter_model.safetensors"
    for name in (weights, "trainer_log.jsonl", "training_loss.png", "train_results.json", "tuneforge_config.yaml"):
        assert (out / name).is_file(), name
    assert [r["current_steps"] for r in read_log(out) if "loss" in r] == [1, 2]


def test_template_mismatch_stops_before_training(shared_dir: Path, tiny_qwen3: Path, tmp_path: Path) -> None:
    """The users' config as written (template: llama3) on a Qwen3 tokenizer stops with an actionable message."""
    overrides = [f"model_name_or_path={tiny_qwen3}", f"dataset_dir={shared_dir / 'lf-data'}", *SHORT]
    result = _cli(str(shared_dir / USER_CONFIG), *overrides, f"output_dir={tmp_path / 'o'}", cwd=tmp_path)
    assert result.returncode == 2 and "allow_template_mismatch" in result.stderr
    assert not (tmp_path / "o" / "trainer_log.jsonl").exists()


def test_sigkill_at_a_random_step_then_resume_matches(tiny_qwen2: Path, tmp_path: Path) -> None:
    """Kill the CLI with SIGKILL mid-run; rerunning the same command resumes from the last complete checkpoint
    (never a half-written one) and ends with the losses and weights of an uninterrupted run."""
    from safetensors.torch import load_file

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": f"Who are you {i}?", "input": "", "output": f"I am Forge {i}."} for i in range(12)]
    (data / "ids.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"ids": {"file_name": "ids.json"}}))
    common = [
        f"model_name_or_path={tiny_qwen2}",
        "dataset=ids",
        f"dataset_dir={data}",
        "template=qwen",
        "max_steps=8",
        "save_steps=2",
        "logging_steps=1",
        "per_device_train_batch_size=4",
        "lora_dropout=0.1",
        "disable_gradient_checkpointing=true",
        "disable_tqdm=true",
        "report_to=none",
    ]
    assert _cli(*common, f"output_dir={tmp_path / 'full'}", cwd=tmp_path).returncode == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *common, f"output_dir={killed}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list(killed.glob("checkpoint-4")) and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "adapter_model.safetensors").exists(), "the run finished before it could be killed"
    result = _cli(*common, f"output_dir={killed}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    full_losses = [r["loss"] for r in read_log(tmp_path / "full") if "loss" in r]
    assert [r["loss"] for r in read_log(killed) if "loss" in r] == pytest.approx(full_losses, abs=1e-5)
    wa = load_file(tmp_path / "full" / "adapter_model.safetensors")
    wb = load_file(killed / "adapter_model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=key)
