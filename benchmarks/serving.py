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
_DECODE = re.compile(r'^tuneforge_decode_(steps|step_seconds|forward_seconds)_total\{batch="(\d+)"\} (\S+)$', re.M)

Split = dict[int, tuple[float, float, float]]  # batch size -> (steps, step seconds, forward seconds)


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
        slot = ("steps", "step_seconds", "forward_seconds").index(kind)
        figures.setdefault(int(batch), [0.0, 0.0, 0.0])[slot] = float(value)
    return {batch: (f[0], f[1], f[2]) for batch, f in figures.items()}


def split_between(before: Split, after: Split) -> Split:
    """The steps taken between two `decode_split` readings."""
    out = {}
    for batch, (steps, step, forward) in after.items():
        old = before.get(batch, (0.0, 0.0, 0.0))
        if steps > old[0]:
            out[batch] = (steps - old[0], step - old[1], forward - old[2])
    return out


def split_lines(split: Split, min_share: float = 0.05) -> list[str]:
    """One line per batch size holding at least `min_share` of the steps: steps, ms/step, share outside forward."""
    total = sum(steps for steps, _, _ in split.values()) or 1
    lines = []
    for batch, (steps, step, forward) in sorted(split.items()):
        if steps / total >= min_share and step > 0:
            lines.append(
                f"batch {batch:>2}: {int(steps):>5} steps, {1000 * step / steps:6.2f} ms/step, "
                f"forward {1000 * forward / steps:6.2f} ms, outside forward {(step - forward) / step:6.1%}"
            )
    return lines
