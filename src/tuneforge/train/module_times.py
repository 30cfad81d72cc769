"""Forward and backward time of chosen modules during training (LLaMA-Factory's `profile_modules`).

Forward is timed from a module's forward pre-hook to its forward hook. Backward is timed through the autograd
graph itself: the tensors a module returns pass through an identity node whose backward marks the start (the
gradient of its outputs is ready), and the tensors it receives, positional or keyword, pass through one whose
backward marks the end (its share of their gradients is done). Trainable parameters inside the module also mark the
end when their gradient is accumulated, so a module whose inputs need no gradient (the first layer of a LoRA run)
is timed too. Torch's full backward hooks would ignore keyword inputs, which is how attention modules are called,
and would report a near-zero backward for them.

Every training-mode call in an optimizer step counts (all micro-batches); evaluation calls do not. Under gradient
checkpointing a checkpointed decoder layer's recomputation falls in its own backward time (transformers checkpoints
the layer's `forward`, inside its hooks), while modules within it count the recomputation as a second forward
call. A module returning something other than a tensor or a tuple/list of tensors gets forward times only.
Accelerator work is timed with device events, CPU with the wall clock.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

MODULE_TIMES = "module_times.jsonl"


def model_device(model: Any) -> torch.device | None:
    """The device of the model's first parameter (None for something without parameters)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return None


class _Clock:
    """Time marks for one device: events on an accelerator (read after a synchronise), the wall clock on CPU."""

    def __init__(self, device: torch.device | None) -> None:
        self.device = device if device is not None and device.type != "cpu" else None

    def mark(self) -> Any:
        if self.device is None:
            return time.perf_counter()
        event = torch.Event(device=self.device, enable_timing=True)
        event.record()
        return event

    def ms(self, start: Any, end: Any) -> float:
        return (end - start) * 1000.0 if self.device is None else start.elapsed_time(end)

    def synchronise(self) -> None:
        if self.device is not None:
            torch.accelerator.synchronize(self.device)


class _Marker(torch.autograd.Function):
    """Identity on tensors; its backward calls `note` once the gradients of all of them have arrived."""

    @staticmethod
    def forward(ctx: Any, note: Callable[[], None], *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.note = note
        return tensors

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        ctx.note()
        return (None, *grads)


def _marked(values: list[Any], note: Callable[[], None]) -> list[Any]:
    """`values` with the tensors that need a gradient passed through one `_Marker` calling `note`."""
    slots = [i for i, value in enumerate(values) if isinstance(value, torch.Tensor) and value.requires_grad]
    if not slots:
        return values
    out = list(values)
    for slot, tensor in zip(slots, _Marker.apply(note, *(values[i] for i in slots)), strict=True):
        out[slot] = tensor
    return out


class ModuleTimes(TrainerCallback):
    """Forward and backward time of the modules matching `patterns`, per optimizer step, reported at each log."""

    def __init__(self, patterns: list[str], path: Path) -> None:
        self.patterns, self.path = patterns, path
        self.clock = _Clock(None)
        self.handles: list[Any] = []
        self.spans: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
        self.totals: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.steps = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None or self.handles:
            return
        self.clock = _Clock(model_device(model))
        chosen = [(name, module) for name, module in model.named_modules() if name and self._wanted(name)]
        for name, module in chosen:
            self._hook(name, module)
        if not chosen:
            logger.warning("`profile_modules`: no module name matches %s; nothing is timed.", self.patterns)
            return
        names = [name for name, _ in chosen]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        logger.info("`profile_modules`: timing %d module(s): %s.", len(names), shown)

    def _wanted(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)

    def _hook(self, name: str, module: torch.nn.Module) -> None:
        forward, backward = self.spans[(name, "forward")], self.spans[(name, "backward")]

        def begin(_: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if not module.training:
                return None
            forward.append([self.clock.mark(), None])
            values = _marked([*args, *kwargs.values()], lambda: self._end(backward))
            return tuple(values[: len(args)]), dict(zip(kwargs, values[len(args) :], strict=True))

        def finish(_: Any, args: Any, output: Any) -> Any:
            if not module.training or not forward or forward[-1][1] is not None:
                return None
            forward[-1][1] = self.clock.mark()
            return _marked_output(output, lambda: backward.append([self.clock.mark()] * 2))

        self.handles.append(module.register_forward_pre_hook(begin, with_kwargs=True))
        self.handles.append(module.register_forward_hook(finish))
        for param in module.parameters():
            if param.requires_grad:
                self.handles.append(param.register_post_accumulate_grad_hook(lambda _: self._end(backward)))

    def _end(self, backward: list[list[Any]]) -> None:
        """A backward of the module is still running here: move its end mark to now."""
        if backward:
            backward[-1][1] = self.clock.mark()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.handles:
            return
        self.clock.synchronise()
        for key, spans in self.spans.items():
            done = [span for span in spans if span[1] is not None]
            self.totals[key] += sum(self.clock.ms(start, end) for start, end in done)
            self.calls[key] += len(done)
            spans.clear()
        self.steps += 1

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._report(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._report(state)
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _report(self, state: Any) -> None:
        """Log and append the mean time per step since the last report; then start a new window."""
        if not self.steps:
            return
        table: dict[str, dict[str, float]] = defaultdict(dict)
        for (name, kind), total in sorted(self.totals.items()):
            table[name][f"{kind}_ms"] = round(total / self.steps, 4)
            table[name][f"{kind}_calls"] = round(self.calls[(name, kind)] / self.steps, 2)
        if getattr(state, "is_world_process_zero", True):
            lines = [
                f"{name}: forward {row['forward_ms']:.3f} ms, backward {row['backward_ms']:.3f} ms"
                for name, row in table.items()
            ]
            logger.info("Module times per step, mean of %d step(s):\n  %s", self.steps, "\n  ".join(lines))
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, "steps": self.steps, "modules": table}) + "\n")
        self.totals.clear()
        self.calls.clear()
        self.steps = 0


def _marked_output(output: Any, note: Callable[[], None]) -> Any:
    """The module's output with its grad-needing tensors passed through a `_Marker` (other types unchanged)."""
    if isinstance(output, torch.Tensor):
        return _marked([output], note)[0]
    if isinstance(output, (tuple, list)) and not hasattr(output, "_fields"):
        return type(output)(_marked(list(output), note))
    return output
