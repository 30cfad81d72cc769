"""What a running or finished job shows: progress from `trainer_log.jsonl`, the loss curve, the log tail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.webui.jobs import LOG_NAME


def read_records(output_dir: str | Path) -> list[dict[str, Any]]:
    """The trainer's log lines so far (a half-written last line is skipped)."""
    path = Path(output_dir) / LOG_NAME
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def progress(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Step, total, percent, ETA, tokens/s, last loss and GPU memory from the latest record."""
    if not records:
        return {"step": 0, "total": 0, "percent": 0.0}
    last = records[-1]
    losses = [r["loss"] for r in records if "loss" in r]
    return {
        "step": last.get("current_steps", 0),
        "total": last.get("total_steps", 0),
        "percent": float(last.get("percentage", 0.0)),
        "elapsed": last.get("elapsed_time", ""),
        "remaining": last.get("remaining_time", ""),
        "tokens_per_sec": last.get("tokens_per_sec"),
        "loss": losses[-1] if losses else None,
        "gpu_mem": last.get("gpu_mem_allocated_gib"),
    }


def loss_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (step, loss, series) for the loss plot: training and evaluation losses."""
    rows = []
    for record in records:
        for key, series in (("loss", "train"), ("eval_loss", "eval")):
            if key in record:
                rows.append({"step": record.get("current_steps", 0), "loss": record[key], "series": series})
    return rows


def loss_frame(records: list[dict[str, Any]]) -> Any:
    """`loss_rows` as a pandas DataFrame (what gr.LinePlot takes)."""
    import pandas as pd

    return pd.DataFrame(loss_rows(records), columns=["step", "loss", "series"])


def log_tail(path: str | Path, lines: int = 30, max_bytes: int = 32768) -> str:
    """The last `lines` lines of a log file (progress-bar carriage returns folded)."""
    path = Path(path)
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(path.stat().st_size - max_bytes, 0))
        text = handle.read().decode("utf-8", errors="replace")
    folded = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(folded[-lines:])


def checkpoints(output_dir: str | Path) -> list[str]:
    """The checkpoint-N folders of a run, in step order."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return [str(p) for p in sorted(found, key=lambda p: int(p.name.split("-")[-1]))]


def finished(output_dir: str | Path) -> bool:
    """Whether the run wrote its final results (the trainer ended normally or after a clean stop, or a
    prediction-only run wrote its metrics, or a benchmark run its results.json)."""
    names = ("train_results.json", "predict_results.json", "results.json")
    return any((Path(output_dir) / name).is_file() for name in names)
