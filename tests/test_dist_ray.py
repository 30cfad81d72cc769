"""Ray Train on CPU (slow): `USE_RAY=1 tuneforge train` with 2 workers (gloo) equals one process.

One local Ray cluster serves the whole module (Ray starts slowly); each run is the README's `USE_RAY=1` command in its
own process, joining that cluster through `ray_init_kwargs: {address: ...}`. Same global batch (2 workers x 2 rows x 2
accumulation == 1 process x 2 rows x 4 accumulation), fp32: losses and final weights agree within 1e-5.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from train_helpers import dist_args, read_log, write_identity_dataset

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_dataset(tmp_path_factory.mktemp("ray_data"))


def _args(model: Path, data: Path, kind: str, out: Path, accumulation: int) -> list[str]:
    return [*dist_args(model, data, kind), f"gradient_accumulation_steps={accumulation}", f"output_dir={out}"]


def _train(args: list[str], cwd: Path, line: str = "tuneforge train cfg.yaml") -> str:
    """Run the shell command `line` with `tuneforge train cfg.yaml` standing for this Python's CLI with `args`."""
    skip = ("LOCAL_RANK", "WORLD_SIZE", "RANK", "FORCE_TORCHRUN", "USE_RAY")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    here = shlex.join([sys.executable, "-m", "tuneforge.cli", "train", *args])
    cmd = ["bash", "-c", line.replace("tuneforge train cfg.yaml", here)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_ray_train_two_workers_equal_one_process(
    kind: str, ray_address: str, tiny_qwen2: Path, data_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    single, on_ray = tmp_path / "single", tmp_path / "ray"
    _train(_args(tiny_qwen2, data_dir, kind, single, 4), tmp_path)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (line,) = [ln.strip() for ln in readme.splitlines() if ln.startswith("USE_RAY=1 tuneforge train")]
    line = line.replace('"auto"', json.dumps(ray_address))  # the README's command, joining this module's Ray
    out = _train(_args(tiny_qwen2, data_dir, kind, on_ray, 2), tmp_path, line)
    assert "Training on Ray Train with 2 workers." in out
    losses = [[r["loss"] for r in read_log(path) if "loss" in r] for path in (single, on_ray)]
    assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], abs=1e-5)  # rank 0 alone logs
    name = "adapter_model.safetensors" if kind == "lora" else "model.safetensors"
    wa, wb = load_file(single / name), load_file(on_ray / name)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=key)
