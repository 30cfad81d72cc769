"""CPU thread layout: pick the intra-op thread count by measuring, instead of trusting the OpenMP default.

On CPU the default (one OpenMP thread per core) can stall badly when the decoding thread shares the cores with
the rest of the process (the HTTP event loop, the tokenizer) or with other processes: a team of OpenMP threads
waits at every barrier for its slowest member. `tune_threads` times a representative step (a decode step of the
model being served) with 1, 2, 4, ... threads, interleaved over a few rounds, and keeps the smallest count within
`TOLERANCE` of the fastest (each count's best time over the rounds, so a step slowed by another process does not
count). A thread count set by the user (`TUNEFORGE_NUM_THREADS`, else `OMP_NUM_THREADS`) is used as given and
nothing is measured.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

ENV_VARS = ("TUNEFORGE_NUM_THREADS", "OMP_NUM_THREADS")
# A larger team must be this much faster to be chosen: when it pays (a compute-bound model on free cores) it is
# 1.5-2x faster, while on a busy machine a noisy measurement can make it look a little faster by chance, and a
# team that then stalls costs 10x (measured: 1 thread 3.8 ms/step, 2 threads 33 ms/step, load average 7 on 2 cores).
TOLERANCE = 0.25
ROUNDS = 5
SLOW_STEP_S = 0.25  # a step this slow is compute-bound: use every core without measuring further


def user_threads() -> int | None:
    """The thread count the user set through the environment, or None."""
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def candidates(cores: int) -> list[int]:
    """1, 2, 4, ... up to `cores`, plus `cores` itself."""
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return [*counts, cores]


def choose(timings: dict[int, float], tolerance: float = TOLERANCE) -> int:
    """The smallest thread count whose time is within `tolerance` of the fastest."""
    best = min(timings.values())
    return min(n for n, t in timings.items() if t <= best * (1 + tolerance))


def tune_threads(step: Callable[[], object], *, cores: int | None = None, respect_env: bool = True) -> int:
    """Set torch's intra-op threads (for the calling thread and new ones) to the fastest count for `step`."""
    import torch

    fixed = user_threads() if respect_env else None
    if fixed is not None:
        torch.set_num_threads(fixed)
        return fixed
    counts = candidates(cores or available_cores())
    timings = _measure(step, counts) if len(counts) > 1 else {counts[0]: 0.0}
    chosen = choose(timings)
    torch.set_num_threads(chosen)
    logger.info("intra-op threads: %d (step ms by threads: %s)", chosen, _format(timings))
    return chosen


def _measure(step: Callable[[], object], counts: list[int]) -> dict[int, float]:
    """Best time of `step` per thread count over interleaved rounds (a slow first step ends the search)."""
    import torch

    timings: dict[int, float] = {}
    torch.set_num_threads(counts[-1])
    started = time.perf_counter()
    step()  # warm-up (allocations, lazy init) with every core
    if time.perf_counter() - started > SLOW_STEP_S:
        return {counts[-1]: 0.0}
    for _ in range(ROUNDS):
        for n in counts:
            torch.set_num_threads(n)
            step()
            started = time.perf_counter()
            step()
            elapsed = time.perf_counter() - started
            timings[n] = min(timings.get(n, elapsed), elapsed)
    return timings


def _format(timings: dict[int, float]) -> str:
    return ", ".join(f"{n}: {1000 * t:.2f}" for n, t in sorted(timings.items()))
