"""FSDP2 on CUDA GPUs (gpu-marked; benchmarks/gpu_run.sh runs it when a machine with two or more GPUs is lent):
`fsdp: full_shard` over two GPUs saves a loadable full model / PEFT adapter equal to one GPU with the same
global batch (fp32). The same check runs on CPU with gloo in tests/test_dist_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import dist_args, read_log, write_identity_dataset

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"),
]


def _train(model: Path, data: Path, out: Path, kind: str, processes: int, *extra: str) -> None:
    args = [*dist_args(model, data, kind), f"gradient_accumulation_steps={4 // processes}", f"output_dir={out}", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")}
    env |= {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": str(processes)} if processes > 1 else {"CUDA_VISIBLE_DEVICES": "0"}
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_fsdp2_on_two_gpus_equals_one(kind: str, tiny_qwen2: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    data = write_identity_dataset(tmp_path)
    _train(tiny_qwen2, data, tmp_path / "one", kind, 1)
    _train(tiny_qwen2, data, tmp_path / "fsdp", kind, 2, "fsdp=full_shard", 'fsdp_config={"fsdp_version": 2}')
    losses = [[r["loss"] for r in read_log(tmp_path / name) if "loss" in r] for name in ("one", "fsdp")]
    assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], abs=1e-4)
    name = "adapter_model.safetensors" if kind == "lora" else "model.safetensors"
    wa, wb = load_file(tmp_path / "one" / name), load_file(tmp_path / "fsdp" / name)
    for key in wa:  # the FSDP file may also hold a tied output head; every key of the single run matches
        torch.testing.assert_close(wa[key], wb[key], atol=1e-4, rtol=1e-4, msg=key)
