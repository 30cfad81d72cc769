"""CPU thread layout: pick the intra-op thread count by measuring, instead of trusting the OpenMP default.

On CPU the default (one OpenMP thread per core) can stall badly when the decoding thread shares the cores with
the rest of the process (the HTTP event loop, the tokenizer) or with other processes: a team of OpenMP threads
waits at every barrier for its slowest member. `tune_threads` times a representative step (a decode step of the
model being served) with 1, 2, 4, ... threads, interleaved over a few rounds, and keeps the smallest count within
`TOLERANCE` of the fastest (each count's best time over the rounds, so a step slowed by another process does not
count). A thread count set by the user (`TUNEFORGE_NUM_THREADS`, else `OMP_NUM_THREADS`) is used as given and
nothing is measured.

Training and data workers follow fixed rules instead (a training step is compute-bound; a worker's share is
arithmetic): `training_threads` gives a CPU training process the free cores, split among local ranks, and
`worker_threads` / `limit_threads` keep `preprocessing_num_workers` workers x threads within the cores.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

ENV_VARS = ("TUNEFORGE_NUM_THREADS", "OMP_NUM_THREADS")
# A larger team must be this much faster to be chosen: when it pays (a compute-bound model on free cores) it is
# 1.5-2x faster, while on a busy machine a noisy measurement can make it look a little faster by chance, and a
# team that then stalls costs 10x (measured: 1 thread 3.8 ms/step, 2 threads 33 ms/step, load average 7 on 2 cores).
TOLERANCE = 0.25
ROUNDS = 5
SLOW_STEP_S = 0.25  # a step this slow is compute-bound: use every core without measuring further


def user_threads(names: tuple[str, ...] = ENV_VARS) -> int | None:
    """The thread count the user set through the environment (`names`, first wins), or None."""
    for name in names:
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


# Set by tuneforge's torchrun launch when the user set no thread count: torchrun then puts OMP_NUM_THREADS=1 in
# every rank's environment, which is its default, not the user's choice, so the training rule below still applies.
AUTO_MARKER = "TUNEFORGE_AUTO_THREADS"
_logged: set[str] = set()


def local_world_size() -> int:
    """Training processes on this machine (torchrun's LOCAL_WORLD_SIZE), at least 1."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    return max(1, int(value)) if value.isdigit() else 1


def training_threads(cores: int | None = None, load: float | None = None) -> tuple[int, str]:
    """Intra-op threads for a CPU training process and why: the user's count, else the cores split among local ranks,
    less the cores other processes keep busy (`load`: the 1-minute load average, read when not given).

    A training step is compute-bound (large matrix products forward and backward), so unlike a decode step it gains
    from every free core; several ranks on one machine share the cores instead of each starting a team per core.
    On busy cores a team stalls at every barrier (measured, `benchmarks/train_threads.py` on 2 cores at load 5:
    1 thread 3.1 s/step, 2 threads 4.9 s/step), so cores that other processes keep busy are left out.
    """
    user = user_threads(ENV_VARS[:1] if os.environ.get(AUTO_MARKER) else ENV_VARS)
    if user is not None:
        return user, "set by TUNEFORGE_NUM_THREADS/OMP_NUM_THREADS"
    cores = cores or available_cores()
    ranks = local_world_size()
    load = _load() if load is None else load
    busy = min(cores, int(max(0.0, load - ranks)))  # the load counts our own ranks too
    share = max(1, (cores - busy) // ranks)
    why = f"all {cores} available cores" if not busy else f"{cores - busy} of {cores} cores free at load {load:.1f}"
    return share, why if ranks == 1 else f"{why}, split among {ranks} local ranks"


def set_training_threads() -> int:
    """Apply `training_threads` to torch in this process (CPU training) and log the choice once."""
    import torch

    threads, why = training_threads()
    torch.set_num_threads(threads)
    _log_once(f"training intra-op threads: {threads} ({why})")
    return threads


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Threads each of `workers` processes may use so that workers x threads <= cores (a user count wins)."""
    return user_threads() or max(1, (cores or available_cores()) // max(1, workers))


def limit_threads(threads: int) -> None:
    """In a worker process: cap torch, OpenMP/MKL and Rust tokenizer threads at `threads` (user values are kept).

    The environment variables reach libraries that read them later (MKL, the tokenizers' Rayon pool, processes the
    worker starts); torch's OpenMP team follows `torch.set_num_threads`. The tokenizers run single-threaded in
    forked workers unless the user says otherwise: a Rayon pool does not survive `fork`.
    """
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch = sys.modules.get("torch")  # do not import torch into a process that has no use for it
    if torch is not None:
        torch.set_num_threads(threads)


@contextmanager
def threads_while(threads: int) -> Iterator[None]:
    """Torch intra-op threads of this process set to `threads` inside the block, restored after it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load() -> float:
    """The 1-minute load average (runnable processes), 0 where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        logger.info(message)
