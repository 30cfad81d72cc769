"""Start `tuneforge train` under torchrun when the machine (or the user) asks for distributed training.

The launch runs `torch.distributed.run` (torchrun) in this process with LLaMA-Factory's environment variables:
`FORCE_TORCHRUN`, `NNODES`, `NODE_RANK`, `NPROC_PER_NODE`, `MASTER_ADDR`, `MASTER_PORT`. Under a launcher that
already started the ranks (torchrun, accelerate launch, deepspeed, srun + torchrun) nothing is relaunched.
With `USE_RAY=1` Ray Train starts the workers instead (train/ray_train.py).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, NotBuiltError, TuneforgeError
from tuneforge.train.ray_train import TRUE, check_ray, run_on_ray, use_ray

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

# Variables every launcher (torchrun, accelerate launch, deepspeed) sets in the processes it starts.
LAUNCHED_MARKERS = ("LOCAL_RANK", "WORLD_SIZE")


class RankFailedError(TuneforgeError):
    """A rank of a distributed job died; the whole job was stopped."""

    exit_code = 1


@dataclass
class LaunchPlan:
    """The torchrun arguments of one node."""

    nnodes: str
    node_rank: str
    nproc_per_node: str
    master_addr: str
    master_port: str
    log_dir: str

    def torchrun_args(self, argv: list[str]) -> list[str]:
        """torchrun's own arguments, then the module and the `tuneforge` arguments it starts on each rank."""
        return [
            f"--nnodes={self.nnodes}",
            f"--node_rank={self.node_rank}",
            f"--nproc_per_node={self.nproc_per_node}",
            f"--master_addr={self.master_addr}",
            f"--master_port={self.master_port}",
            f"--log_dir={self.log_dir}",
            "--tee=3",
            "-m",
            "tuneforge.cli",
            *argv,
        ]


def under_launcher(env: dict[str, str] | None = None) -> bool:
    """True inside a process started by a distributed launcher (its rank variables are set)."""
    env = os.environ if env is None else env
    return any(env.get(name) for name in LAUNCHED_MARKERS)


def accelerator_count() -> int:
    """Visible accelerators (CUDA / ROCm / XPU / NPU devices); 0 on a CPU-only machine."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return int(accelerator.device_count())
    return torch.cuda.device_count()


def wants_torchrun(env: dict[str, str] | None = None, devices: int | None = None) -> bool:
    """LLaMA-Factory's rule: relaunch when FORCE_TORCHRUN is on or more than one accelerator is visible."""
    env = os.environ if env is None else env
    if under_launcher(env) or use_ray(env):
        return False
    if env.get("FORCE_TORCHRUN", "").lower() in TRUE:
        return True
    return (accelerator_count() if devices is None else devices) > 1


def free_port() -> int:
    """A TCP port free on this machine now (the default MASTER_PORT of a single-node launch)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan_launch(
    env: dict[str, str] | None = None, devices: int | None = None, master: tuple[str | None, str | None] = (None, None)
) -> LaunchPlan:
    """The node's torchrun settings from the environment, with LLaMA-Factory's defaults; `master` (the config's
    `master_addr`, `master_port`) stands in for MASTER_ADDR / MASTER_PORT when those are unset."""
    env = dict(os.environ if env is None else env)
    for name, value in zip(("MASTER_ADDR", "MASTER_PORT"), master, strict=True):
        if value and not env.get(name):
            env[name] = str(value)
    devices = accelerator_count() if devices is None else devices
    for name in ("NNODES", "NODE_RANK", "NPROC_PER_NODE", "MASTER_PORT"):
        if env.get(name) and not env[name].isdigit():
            raise TuneforgeError(f"{name}={env[name]!r}: give a whole number (e.g. {name}=2).")
    nnodes = env.get("NNODES", "1")
    if int(nnodes) > 1 and not env.get("MASTER_PORT"):
        raise TuneforgeError(
            f"NNODES={nnodes}: set MASTER_ADDR (the address of the node with NODE_RANK=0) and MASTER_PORT "
            "(the same free port on every node) so the nodes can find each other."
        )
    return LaunchPlan(
        nnodes=nnodes,
        node_rank=env.get("NODE_RANK", "0"),
        nproc_per_node=env.get("NPROC_PER_NODE", str(max(devices, 1))),
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=env.get("MASTER_PORT") or str(free_port()),
        log_dir=tempfile.mkdtemp(prefix="tuneforge-torchrun-"),
    )


def launch_if_wanted(
    argv: list[str], cfg: TuneforgeConfig | None = None, run: Callable[[TuneforgeConfig], Any] | None = None
) -> bool:
    """Run `tuneforge ARGV` on every rank under torchrun when wanted, or with USE_RAY=1 `run(cfg)` on every Ray
    Train worker (`run` is `tuneforge.train.run_training`); False (nothing done) otherwise.

    Raises `RankFailedError` naming the rank that died and its last log line when the job fails.
    """
    if cfg is not None:
        preflight(cfg)
        if use_ray() and run is not None:
            run_on_ray(cfg, run)
            return True
    if not wants_torchrun():
        return False
    plan = plan_launch(master=(cfg.training.master_addr, cfg.training.master_port) if cfg else (None, None))
    args = plan.torchrun_args(argv)
    print(f"[tuneforge] Launching {plan.nproc_per_node} processes per node on {plan.nnodes} node(s):", flush=True)
    print("torchrun " + shlex.join(args), flush=True)
    run_torchrun(args, plan.log_dir)
    shutil.rmtree(plan.log_dir, ignore_errors=True)  # kept only when a rank failed (the message points into it)
    return True


def run_torchrun(args: list[str], log_dir: str) -> None:
    """`torchrun ARGS` in this process; a failed rank becomes a `RankFailedError` (the others are stopped)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from tuneforge.threads import AUTO_MARKER, user_threads

    if user_threads() is None:  # torchrun will set OMP_NUM_THREADS=1: its default, not the user's choice
        os.environ[AUTO_MARKER] = "1"
    try:
        run(get_args_parser().parse_args(args))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        raise RankFailedError(failure_message(rank, failure, log_dir)) from None


def failure_message(rank: int, failure: Any, log_dir: str) -> str:
    """What a user needs when rank `rank` died: which rank, how, its last log line and where its logs are."""
    how = f"exit code {failure.exitcode}" if failure.exitcode >= 0 else f"signal {-failure.exitcode}"
    logs = rank_logs(log_dir, failure.local_rank)
    last = last_line(logs)
    where = f" Its full output: {', '.join(str(p) for p in logs)}." if logs else ""
    return (
        f"rank {rank} (local rank {failure.local_rank}) died ({how}); the other ranks were stopped. "
        f"Its last log line: {last.rstrip('.') or '(none)'}.{where} Fix the cause and rerun; "
        "`resume_from_checkpoint` (or rerunning with the same output_dir) continues from the last checkpoint."
    )


def rank_logs(log_dir: str, local_rank: int) -> list[Path]:
    """The stderr and stdout files torchrun kept for `local_rank` in its latest attempt."""
    attempts = sorted(Path(log_dir).glob("*/attempt_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not attempts:
        return []
    folder = attempts[-1] / str(local_rank)
    return [p for p in (folder / "stderr.log", folder / "stdout.log") if p.exists()]


def last_line(paths: list[Path]) -> str:
    """The last non-empty line of the first file that has one."""
    for path in paths:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


def planned_world_size(env: dict[str, str] | None = None) -> int:
    """Processes the job will have: the launcher's WORLD_SIZE, else what this launch would start, else 1."""
    env = os.environ if env is None else env
    if env.get("WORLD_SIZE"):
        return int(env["WORLD_SIZE"])
    if not wants_torchrun(env):
        return 1
    per_node = env.get("NPROC_PER_NODE") or str(max(accelerator_count(), 1))
    return int(per_node) * int(env.get("NNODES", "1"))


def check_fsdp_world(cfg: TuneforgeConfig, world: int) -> None:
    """Refuse `fsdp` for a run of one process (it shards over several); the CLI and the Python API both ask."""
    if cfg.training.fsdp and world < 2:
        raise ConfigError(
            f"`fsdp: {cfg.training.fsdp}` shards the model over several processes, but this run has one. Start "
            "several: `FORCE_TORCHRUN=1 NPROC_PER_NODE=2 tuneforge train ...` (automatic with more than one GPU) or "
            "your own `torchrun` launch, or remove `fsdp`."
        )


def preflight(cfg: TuneforgeConfig) -> None:
    """Stop before any work when the config's distributed keys cannot run as asked; warn about keys without effect."""
    import torch

    from tuneforge.train.ds_config import check_deepspeed
    from tuneforge.train.fsdp import fsdp_version

    check_ray(cfg)
    world = cfg.ray.ray_num_workers if use_ray() else planned_world_size()
    if cfg.method.stage == "ppo" and world > 1:
        raise NotBuiltError(
            f"`stage: ppo` runs in one process only (its own loop does not synchronise ranks yet), but this run has "
            f"{world}. Start it without FORCE_TORCHRUN and with one GPU visible (CUDA_VISIBLE_DEVICES=0)."
        )
    t = cfg.training
    if t.fsdp and t.deepspeed:
        raise TuneforgeError("`fsdp` and `deepspeed` both shard the model; keep one of them.")
    check_fsdp_world(cfg, world)
    cuda = torch.cuda.is_available()
    if t.fsdp and not cuda and fsdp_version(cfg) != 2:
        logger.warning(
            "`fsdp` with fsdp_version 1 has no effect on CPU: accelerate shards only on GPUs, so the %d processes run "
            "plain DDP with gloo (same results, no sharding). FSDP2 (`fsdp_config: {fsdp_version: 2}`, the default) "
            "shards on CPU too.",
            world,
        )
    check_deepspeed(cfg, world, cuda=cuda)
