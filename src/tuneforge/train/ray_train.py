"""Training on Ray Train, as LLaMA-Factory's `USE_RAY=1 llamafactory-cli train cfg.yaml` does.

Ray Train's `TorchTrainer` starts `ray_num_workers` workers (one GPU each on a GPU cluster, one CPU process each
with gloo elsewhere), sets up their torch process group and rank variables, and each worker runs tuneforge's own
recipe for the configured stage: the same code path as a torchrun rank. `ray_init_kwargs` go to `ray.init()`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.files import json_object

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

TRUE = ("1", "true", "yes", "y")


def use_ray(env: dict[str, str] | None = None) -> bool:
    """True when the environment asks for Ray Train (USE_RAY=1, LLaMA-Factory's switch)."""
    env = os.environ if env is None else env
    return env.get("USE_RAY", "").lower() in TRUE


def init_kwargs(cfg: TuneforgeConfig) -> dict[str, Any]:
    """`ray_init_kwargs` as a dict (a JSON string is parsed); a clear error when it is not a JSON object."""
    raw = cfg.ray.ray_init_kwargs
    if raw is None:
        return {}
    if not isinstance(raw, str | dict):
        raise ConfigError("`ray_init_kwargs` must be a dict of ray.init() arguments, e.g. {address: auto}.")
    return json_object(raw, "`ray_init_kwargs`", "a dict of ray.init() arguments, e.g. {num_cpus: 8}")


def check_ray(cfg: TuneforgeConfig) -> None:
    """Before any work: Ray is installed and the Ray keys make sense, or warn that they have no effect."""
    from tuneforge.extras import require

    r, t = cfg.ray, cfg.training
    if not use_ray():
        if r.ray_num_workers != 1 or r.ray_init_kwargs is not None:
            logger.warning("`ray_num_workers` / `ray_init_kwargs` have no effect without USE_RAY=1 in the environment.")
        return
    require("ray", "USE_RAY=1")
    if r.ray_num_workers < 1:
        raise ConfigError(f"`ray_num_workers: {r.ray_num_workers}`: give 1 or more workers.")
    init_kwargs(cfg)
    if t.master_addr or t.master_port:
        logger.warning("`master_addr` / `master_port` have no effect with USE_RAY=1: Ray Train picks them itself.")


def run_on_ray(cfg: TuneforgeConfig, run: Callable[[TuneforgeConfig], Any]) -> None:
    """Run `run(cfg)` (`tuneforge.train.run_training`) on each of `ray_num_workers` Ray Train workers; raises
    `TuneforgeError` naming the failure when one fails."""
    import ray
    import torch

    started = not ray.is_initialized()
    if started:
        ray.init(**init_kwargs(cfg))
    storage = tempfile.mkdtemp(prefix="tuneforge-ray-")
    try:
        trainer = _torch_trainer(cfg, run, torch.cuda.is_available(), storage)
        print(f"[tuneforge] Training on Ray Train with {cfg.ray.ray_num_workers} workers.", flush=True)
        _fit(trainer)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()


def _torch_trainer(cfg: TuneforgeConfig, run: Callable[[TuneforgeConfig], Any], cuda: bool, storage: str) -> Any:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    workers = cfg.ray.ray_num_workers
    kind = "GPU" if cuda else "CPU"
    available = int(ray.cluster_resources().get(kind, 0))
    if workers > available:
        raise TuneforgeError(
            f"`ray_num_workers: {workers}` needs {workers} {kind}s but the Ray cluster has {available}. Lower "
            "`ray_num_workers` or give Ray more (e.g. `ray_init_kwargs: {num_cpus: N}` on one machine)."
        )
    return TorchTrainer(
        _worker,
        train_loop_config={"cfg": cfg, "run": run, "cwd": os.getcwd()},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=cuda),
        torch_config=TorchConfig(backend="nccl" if cuda else "gloo"),
        run_config=RunConfig(name="tuneforge", storage_path=storage),
    )


def _fit(trainer: Any) -> None:
    from ray.train import TrainingFailedError

    try:
        trainer.fit()
    except TrainingFailedError as err:
        failures = getattr(err, "worker_failures", {}) or {}
        named = "; ".join(f"worker {rank}: {_last_line(exc)}" for rank, exc in sorted(failures.items()))
        why = named or _last_line(err)
        raise TuneforgeError(f"Ray Train failed ({why}); the other workers were stopped.") from None


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: Ray set its rank variables and process group; run the stage's recipe."""
    os.chdir(config["cwd"])  # relative paths in the config mean what they meant where `tuneforge train` ran
    config["run"](config["cfg"])
