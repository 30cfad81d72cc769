"""DeepSpeed ZeRO-3 on a CUDA GPU (gpu-marked; benchmarks/gpu_run.sh runs them when a GPU is lent): the final
model is gathered into a loadable safetensors model / PEFT adapter, and a run resumed from a ZeRO checkpoint
ends where an uninterrupted one does."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import read_log, write_identity_dataset

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or importlib.util.find_spec("deepspeed") is None,
        reason="needs a CUDA GPU and the deepspeed package",
    ),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_dataset(tmp_path_factory.mktemp("zero_data"))


def _train(model: Path, data: Path, out: Path, *extra: str) -> str:
    args = [
        f"model_name_or_path={model}",
        "dataset=ids",
        f"dataset_dir={data}",
        "template=qwen",
        "deepspeed=z3",
        "per_device_train_batch_size=2",
        "lr_scheduler_type=constant",
        "learning_rate=1e-3",
        "logging_steps=1",
        "disable_tqdm=true",
        "report_to=none",
        f"output_dir={out}",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")}
    env |= {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": str(max(torch.cuda.device_count(), 1))}
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


def test_zero3_full_saves_a_loadable_gathered_model(tiny_qwen2: Path, data_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    _train(tiny_qwen2, data_dir, out, "finetuning_type=full", "max_steps=2", "save_steps=2")
    assert list((out / "checkpoint-2").glob("global_step*")), "the checkpoint holds ZeRO shards to resume from"
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    for (name, p), (_, q) in zip(model.named_parameters(), base.named_parameters(), strict=True):
        assert p.shape == q.shape and p.numel() > 0, name  # gathered, not empty ZeRO-3 placeholders
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), base.parameters(), strict=True))


def test_zero3_lora_saves_a_loadable_adapter(tiny_qwen2: Path, data_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "out"
    _train(tiny_qwen2, data_dir, out, "finetuning_type=lora", "max_steps=2", "save_steps=1000")
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all(t.numel() > 0 for t in adapter.values())
    assert any(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)


def test_zero3_resume_equals_uninterrupted(tiny_qwen2: Path, data_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    common = ("finetuning_type=full", "save_steps=2", "disable_shuffling=true")
    _train(tiny_qwen2, data_dir, tmp_path / "full", *common, "max_steps=4")
    _train(tiny_qwen2, data_dir, tmp_path / "resumed", *common, "max_steps=2")
    _train(tiny_qwen2, data_dir, tmp_path / "resumed", *common, "max_steps=4")  # continues from checkpoint-2
    losses = [[r["loss"] for r in read_log(tmp_path / name) if "loss" in r] for name in ("full", "resumed")]
    assert len(losses[0]) == 4
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)
    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-4, rtol=1e-4, msg=key)
