"""Training profilers behind LLaMA-Factory's keys.

- `enable_torch_profiler`: a `torch.profiler` trace on the schedule `profiler_wait_steps`, `profiler_warmup_steps`,
  `profiler_active_steps`, `profiler_repeat` (counted in optimizer steps). Each recorded cycle is written by its rank
  to `<profiler_output_dir, else output_dir/profiler>/rank_<N>/` as Chrome-trace JSON, which Perfetto,
  chrome://tracing and TensorBoard's profiler plugin open.
- `profile_modules`: forward and backward time per optimizer step of the modules whose names match its
  comma-separated fnmatch patterns, logged and appended to `output_dir/module_times.jsonl` at each logging step
  (train/module_times.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from tuneforge.config.lists import split_list
from tuneforge.train.module_times import MODULE_TIMES, ModuleTimes, model_device

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

TRACE_GLOB = "*.pt.trace.json"
_SCHEDULE_KEYS = ("profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps", "profiler_repeat")


def profiler_callbacks(cfg: TuneforgeConfig) -> list[TrainerCallback]:
    """The profiler callbacks the config asks for (none by default); warns about profiler keys set without
    `enable_torch_profiler`, which would otherwise do nothing."""
    p, out = cfg.profiler, Path(cfg.training.output_dir)
    callbacks: list[TrainerCallback] = []
    if p.enable_torch_profiler:
        folder = Path(p.profiler_output_dir) if p.profiler_output_dir else out / "profiler"
        callbacks.append(TraceCallback(folder, p.model_dump()))
    else:
        idle = sorted(set(p.changed()) - {"enable_torch_profiler", "profile_modules"})
        if idle:
            logger.warning(
                "%s have no effect without `enable_torch_profiler: true`.", ", ".join(f"`{k}`" for k in idle)
            )
    if p.profile_modules:
        callbacks.append(ModuleTimes(split_list(p.profile_modules), out / MODULE_TIMES))
    return callbacks


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _activities(model: Any) -> list[Any]:
    """CPU, plus the accelerator the model sits on where this torch build can trace it."""
    from torch.profiler import ProfilerActivity, supported_activities

    wanted = [ProfilerActivity.CPU]
    device = model_device(model)
    if device is not None and device.type != "cpu":
        extra = getattr(ProfilerActivity, device.type.upper(), None)
        if extra is not None:
            wanted.append(extra)
    return [a for a in wanted if a in supported_activities()]


class TraceCallback(TrainerCallback):
    """Runs `torch.profiler` over training on LLaMA-Factory's wait/warmup/active/repeat schedule."""

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.root, self.settings = folder, settings
        self.profiler: Any = None
        self.folder = folder
        self.steps = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        import torch.profiler as tp

        s = self.settings
        self.folder = self.root / f"rank_{_rank()}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.profiler = tp.profile(
            activities=_activities(model),
            schedule=tp.schedule(
                **{key.removeprefix("profiler_").removesuffix("_steps"): s[key] for key in _SCHEDULE_KEYS}
            ),
            on_trace_ready=tp.tensorboard_trace_handler(str(self.folder)),
            record_shapes=s["profiler_record_shapes"],
            profile_memory=s["profiler_profile_memory"],
            with_stack=s["profiler_with_stack"],
        )
        self.profiler.start()
        logger.info("Torch profiler on: traces go to %s.", self.folder)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is not None:
            self.profiler.step()
            self.steps += 1

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is None:
            return
        self.profiler.stop()
        self.profiler = None
        traces = sorted(self.folder.glob(TRACE_GLOB))
        if traces:
            logger.info("Torch profiler: %d trace(s) in %s.", len(traces), self.folder)
            return
        s = self.settings
        needed = s["profiler_wait_steps"] + s["profiler_warmup_steps"] + s["profiler_active_steps"]
        logger.warning(
            "Torch profiler wrote no trace: training ran %d step(s) and a first trace needs %d "
            "(profiler_wait_steps + profiler_warmup_steps + profiler_active_steps); lower them or train longer.",
            self.steps,
            needed,
        )
