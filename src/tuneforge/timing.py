"""Where start-up time goes: `Breakdown` times named parts of a command and prints them on one line.

The first part, "start-up", is everything from the interpreter's start until the first timed part (Python,
tuneforge, click, pydantic and reading the config), measured from the process start time Linux records.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator


def process_age() -> float | None:
    """Seconds since this process started (None where /proc is unavailable)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


class Breakdown:
    """Named, timed parts of one command, in order; `str()` gives `imports 1.2 s, tokenizer 0.4 s, ...`."""

    def __init__(self) -> None:
        age = process_age()
        self.parts: list[tuple[str, float]] = [("start-up", age)] if age is not None else []

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the body of the `with` block as `name`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.parts.append((name, time.perf_counter() - started))

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.parts)


def loaded_line(timing: Breakdown, engine: object) -> str:
    """`loaded: start-up .. s, imports .. s, ...; 1 CPU thread` for chat and api start-up."""
    threads = getattr(getattr(engine, "backend", None), "threads", None)
    return f"loaded: {timing}" + (f"; {threads} CPU thread{'s' if threads > 1 else ''}" if threads else "")
