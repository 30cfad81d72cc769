"""Loss curves as PNG files (`training_loss.png`, `training_eval_loss.png`) from the trainer log."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def smooth(values: list[float], weight: float | None = None) -> list[float]:
    """Exponential moving average, debiased, with a weight that grows with the number of points (as TensorBoard)."""
    if not values:
        return []
    if weight is None:
        weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(values))) - 0.5)
    out, last = [], 0.0
    for i, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**i) if weight < 1 else value)
    return out


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a `trainer_log.jsonl` file."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_losses(
    output_dir: str | Path, records: list[dict[str, Any]] | None = None, extra_keys: tuple[str, ...] = ()
) -> list[Path]:
    """Write `training_loss.png` (raw + smoothed) and, when evaluated, `training_eval_loss.png`; return the paths.

    `extra_keys` (e.g. `rewards/accuracies`) get a plot each, `training_rewards_accuracies.png`.
    """
    out = Path(output_dir)
    records = read_log(out / "trainer_log.jsonl") if records is None else records
    written = []
    for key in ("loss", "eval_loss", *extra_keys):
        name = f"training_{key.replace('/', '_')}.png"
        points = [(r["current_steps"], r[key]) for r in records if key in r and math.isfinite(r[key])]
        if points:
            written.append(_plot(points, key, out / name))
    return written


def _plot(points: list[tuple[int, float]], key: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, values = zip(*points, strict=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
    ax.plot(steps, smooth(list(values)), color="#1f77b4", label="smoothed")
    ax.set_title(f"{key} of {path.parent.name}")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
