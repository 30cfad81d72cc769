"""What the serving benchmarks share: API servers in their own processes, and the decode-step split per batch size.

Servers run as separate processes (as real deployments do), so the benchmark's clients never compete with the
engine for its interpreter lock. The decode-step split comes from the server's own `/metrics` (the engine measures
each step and its model forward), as the difference between two scrapes around a measurement.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TUNEFORGE_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_KINDS = ("steps", "step_seconds", "forward_seconds", "cpu_seconds")
_DECODE = re.compile(rf'^tuneforge_decode_({"|".join(_KINDS)})_total\{{batch="(\d+)"\}} (\S+)$', re.M)

Split = dict[int, tuple[float, ...]]  # batch size -> (steps, step s, forward s, engine-thread CPU s)


def default_env() -> dict[str, str]:
    """This environment without any thread-count setting (each tool runs with its own defaults)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(name: str, command: list[str], port: int, log: Path, extra: dict[str, str]) -> subprocess.Popen:
    """Start one API server (environment: defaults plus `extra`) and wait until /v1/models answers."""
    import httpx

    env = {**default_env(), "API_PORT": str(port), "API_HOST": "127.0.0.1", **extra}
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited early; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"{name} did not start within 300 s; see {log}")


def tuneforge_api(config: Path) -> list[str]:
    """The command serving `config` with this checkout's tuneforge (same interpreter)."""
    import sys

    return [sys.executable, "-m", "tuneforge.cli", "api", str(config)]


def tuneforge_env() -> dict[str, str]:
    """PYTHONPATH of this process, so the server imports the same tuneforge as the benchmark."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


def decode_split(port: int) -> Split:
    """The engine's decode figures so far, read from the tuneforge server's /metrics (empty for other servers)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    figures: dict[int, list[float]] = {}
    for kind, batch, value in _DECODE.findall(text):
        figures.setdefault(int(batch), [0.0] * len(_KINDS))[_KINDS.index(kind)] = float(value)
    return {batch: tuple(f) for batch, f in figures.items()}


def split_between(before: Split, after: Split) -> Split:
    """The steps taken between two `decode_split` readings."""
    out = {}
    for batch, figures in after.items():
        old = before.get(batch, (0.0,) * len(figures))
        if figures[0] > old[0]:
            out[batch] = tuple(new - was for new, was in zip(figures, old, strict=True))
    return out


def split_lines(split: Split, min_share: float = 0.05) -> list[str]:
    """One line per batch size holding at least `min_share` of the steps: ms per step (wall), the forward's ms,
    the share outside the forward, and the engine thread's CPU ms per step (what a busy machine does not inflate)."""
    total = sum(figures[0] for figures in split.values()) or 1
    lines = []
    for batch, (steps, step, forward, cpu) in sorted(split.items()):
        if steps / total >= min_share and step > 0:
            lines.append(
                f"batch {batch:>2}: {int(steps):>5} steps, {1000 * step / steps:6.2f} ms/step, "
                f"forward {1000 * forward / steps:6.2f} ms, outside forward {(step - forward) / step:6.1%}, "
                f"engine CPU {1000 * cpu / steps:6.2f} ms/step"
            )
    return lines


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) that process `pid`, its threads and its live child processes used so far.

    Unlike tokens/s, CPU time per generated token hardly depends on what else keeps the machine busy, so it
    compares servers fairly on a shared machine (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tasks = Path(f"/proc/{pid}/task").iterdir()
        children = [int(child) for task in tasks for child in (task / "children").read_text().split()]
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_cpu(child) for child in children)
