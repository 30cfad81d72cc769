"""Trainer callbacks: `trainer_log.jsonl` (one line per logging step) and a progress bar with loss, tokens/s, ETA."""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

LOG_NAME = "trainer_log.jsonl"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

logger = logging.getLogger(__name__)


def hms(seconds: float) -> str:
    """`H:MM:SS` for a duration in seconds (negative counts as 0)."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Throughput:
    """Tokens/s and remaining time, measured from the steps and tokens seen since this run (re)started."""

    def __init__(self) -> None:
        self.start = time.time()
        self.start_step = 0
        self.start_tokens = 0

    def reset(self, step: int, tokens: int) -> None:
        self.start, self.start_step, self.start_tokens = time.time(), step, tokens

    def elapsed(self) -> float:
        return time.time() - self.start

    def tokens_per_sec(self, tokens: int) -> float:
        return (tokens - self.start_tokens) / max(self.elapsed(), 1e-9)

    def remaining(self, step: int, total: int) -> float:
        done = step - self.start_step
        return self.elapsed() / done * (total - step) if done > 0 else 0.0


class LogCallback(TrainerCallback):
    """Append a JSON line to `output_dir/trainer_log.jsonl` for every training or evaluation log."""

    def __init__(self, output_dir: str) -> None:
        self.path = Path(output_dir) / LOG_NAME
        self.clock = Throughput()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.clock.reset(state.global_step, state.num_input_tokens_seen)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record = self.record(state, logs)
        if record is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def record(self, state: Any, logs: dict[str, Any]) -> dict[str, Any] | None:
        """The log line for one `on_log` event (None for the end-of-training summary)."""
        if "loss" not in logs and "eval_loss" not in logs:
            return None
        step, total = state.global_step, state.max_steps
        record: dict[str, Any] = {"current_steps": step, "total_steps": total}
        for key in ("loss", "aux_loss", "eval_loss", "eval_accuracy", "grad_norm", "epoch"):
            if key in logs:
                record[key] = logs[key]
        record.update({k: v for k, v in logs.items() if "/" in k and isinstance(v, (int, float))})  # stage metrics
        if "learning_rate" in logs:
            record["lr"] = logs["learning_rate"]
        record["percentage"] = round(100 * step / total, 2) if total else 0.0
        record["tokens_per_sec"] = round(self.clock.tokens_per_sec(state.num_input_tokens_seen), 2)
        record["total_tokens"] = state.num_input_tokens_seen
        record["elapsed_time"] = hms(self.clock.elapsed())
        record["elapsed_seconds"] = round(self.clock.elapsed(), 3)
        record["remaining_time"] = hms(self.clock.remaining(step, total))
        record.update(_gpu_memory())
        return record


def _gpu_memory() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    gib = 1024**3
    return {
        "gpu_mem_allocated_gib": round(torch.cuda.memory_allocated() / gib, 3),
        "gpu_mem_peak_gib": round(torch.cuda.max_memory_allocated() / gib, 3),
    }


class ProgressCallback(TrainerCallback):
    """A tqdm progress bar over optimizer steps showing the last loss, tokens/s and the ETA."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.clock = Throughput()
        self.loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and not args.disable_tqdm:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", dynamic_ncols=True)
        self.clock.reset(state.global_step, state.num_input_tokens_seen)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        postfix = {"tok/s": f"{self.clock.tokens_per_sec(state.num_input_tokens_seen):,.0f}"}
        if self.loss is not None:
            postfix["loss"] = f"{self.loss:.4f}"
        postfix["eta"] = hms(self.clock.remaining(state.global_step, state.max_steps))
        self.bar.set_postfix(postfix, refresh=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs and math.isfinite(logs["loss"]):
            self.loss = logs["loss"]
        if self.bar is not None and logs and "eval_loss" in logs:
            self.bar.write(f"step {state.global_step}: eval_loss {logs['eval_loss']:.4f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class GracefulStop(TrainerCallback):
    """Stop cleanly on SIGINT / SIGTERM: finish the current step, save a checkpoint, then end training.

    The run then ends as a finished one would (final model, logs and plot written). A second signal while
    stopping interrupts at once (KeyboardInterrupt), so a stuck run can still be broken off.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Received %s: saving a checkpoint after this step, then stopping.", signal.Signals(signum).name)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
