"""Atomic checkpoints, fingerprints and the choice of where to resume from.

A checkpoint is written under `output_dir/.staging/checkpoint-N`, completed with `tuneforge_checkpoint.json`
(the fingerprint of model and data) and only then renamed to `output_dir/checkpoint-N`. A rename is atomic, so a
run killed mid-save leaves at worst a staging folder, never a `checkpoint-N` that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.files import fsync_dir, write_json_atomic
from tuneforge.train.dist import is_main_process

logger = logging.getLogger(__name__)

STAGING = ".staging"
MARKER = "tuneforge_checkpoint.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
# Files tuneforge writes into output_dir at the start of a run; they do not make output_dir "non-empty".
_OWN_FILES = {"trainer_log.jsonl", "tuneforge_config.yaml", STAGING}


def publish(staged: Path, final: Path, fingerprint: dict[str, Any]) -> None:
    """Mark a fully written staged checkpoint complete and move it into place atomically."""
    write_json_atomic(staged / MARKER, {"fingerprint": fingerprint}, sort_keys=True)
    fsync_dir(staged)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staged, final)
    fsync_dir(final.parent)
    with contextlib.suppress(OSError):
        staged.parent.rmdir()  # only succeeds once nothing else is staged


def is_complete(path: Path) -> bool:
    """A checkpoint counts only if it has the completion marker (written just before the final rename)."""
    return path.is_dir() and _CKPT.match(path.name) is not None and (path / MARKER).is_file()


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest step first."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if is_complete(p)]
    return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))


def clear_staging(output_dir: Path) -> None:
    """Remove half-written checkpoints left by a killed run."""
    staging = output_dir / STAGING
    if staging.exists() and is_main_process():
        logger.warning("Removing incomplete checkpoint(s) left by an interrupted save in %s", staging)
        shutil.rmtree(staging)


def resolve_resume(output_dir: str, resume_from_checkpoint: str | None, overwrite_output_dir: bool) -> str | None:
    """Which checkpoint to resume from, as LLaMA-Factory decides, or a clear error.

    An explicit `resume_from_checkpoint` must be a complete checkpoint. Otherwise, unless `overwrite_output_dir`,
    the last complete checkpoint in `output_dir` is used; a non-empty `output_dir` without one is an error.
    """
    out = Path(output_dir)
    if resume_from_checkpoint:
        path = Path(resume_from_checkpoint)
        if not path.is_dir():
            raise TuneforgeError(f"`resume_from_checkpoint: {resume_from_checkpoint}` does not exist.")
        if not (path / MARKER).is_file() and not (path / "trainer_state.json").is_file():
            raise TuneforgeError(
                f"`resume_from_checkpoint: {resume_from_checkpoint}` is not a complete checkpoint "
                "(no trainer_state.json); its save was probably interrupted. Pick an earlier checkpoint."
            )
        return str(path)
    if overwrite_output_dir or not out.is_dir():
        return None
    checkpoints = complete_checkpoints(out)
    if checkpoints:
        logger.info("Resuming from %s (set overwrite_output_dir: true to start afresh)", checkpoints[-1])
        return str(checkpoints[-1])
    other = [p.name for p in out.iterdir() if p.name not in _OWN_FILES]
    if other:
        raise TuneforgeError(
            f"Output directory {out} already exists and is not empty ({', '.join(sorted(other)[:5])}) but holds no "
            "complete checkpoint to resume from. Set `overwrite_output_dir: true` to write into it anyway, "
            "or choose another `output_dir`."
        )
    return None


def fingerprint(model_path: str | None, method: dict[str, Any], dataset: Any) -> dict[str, str]:
    """Short hashes identifying the base model + method and the tokenized training data."""
    return {"model": _hash([_model_id(model_path), method]), "data": dataset_hash(dataset)}


def _model_id(model_path: str | None) -> Any:
    config = Path(model_path or "") / "config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8"))
    return model_path


def dataset_hash(dataset: Any) -> str:
    """Hash of the dataset size and a sample of its rows' token ids (first, middle and last rows).

    A streamed dataset (no length) is identified by its first rows."""
    if not hasattr(dataset, "__len__"):
        return _hash(["stream", [list(row["input_ids"]) for row in dataset.take(3)]])
    n = len(dataset)
    picks = sorted({0, n // 2, max(n - 1, 0)}) if n else []
    rows = [list(dataset[i]["input_ids"]) for i in picks]
    return _hash([n, rows])


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_fingerprint(checkpoint: str, current: dict[str, str]) -> None:
    """Stop when resuming a checkpoint saved for a different model/method or different training data."""
    marker = Path(checkpoint) / MARKER
    if not marker.is_file():
        logger.warning("%s has no tuneforge fingerprint; cannot check it matches this model and data", checkpoint)
        return
    saved = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint", {})
    changed = [what for what in ("model", "data") if saved.get(what) and saved[what] != current.get(what)]
    if changed:
        raise TuneforgeError(
            f"Cannot resume from {checkpoint}: the {' and '.join(changed)} changed since it was saved "
            "(model_name_or_path / method settings, or dataset / template / cutoff_len / max_samples). "
            "Restore the original settings, or start afresh with `overwrite_output_dir: true` or a new `output_dir`."
        )


def trim_log(log_path: Path, step: int) -> None:
    """Drop log lines written after `step` by a run that was killed before its next checkpoint."""
    if not log_path.is_file() or not is_main_process():
        return
    kept = [
        line
        for line in log_path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("current_steps", 0) <= step
    ]
    log_path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def checkpoint_step(path: str) -> int:
    """The step number in a checkpoint folder name (0 if it has none)."""
    match = _CKPT.match(Path(path).name)
    return int(match.group(1)) if match else 0
