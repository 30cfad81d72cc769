"""Durable file writes shared by checkpoints, exports and the web UI's state files, and the one reader of the
JSON objects users give (registries, DeepSpeed files, engine and Ray settings)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, TuneforgeError


def write_json_atomic(path: Path, data: Any, *, sort_keys: bool = False) -> None:
    """Write `data` as indented UTF-8 JSON to a temporary file in the same folder, fsync it, then rename it over
    `path` (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False, sort_keys=sort_keys)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def json_object(
    text: str | dict[str, Any], where: str, what: str, error: type[TuneforgeError] = ConfigError
) -> dict[str, Any]:
    """`text` parsed as a JSON object (a dict is taken as it is); otherwise `error` naming `where`, the line and
    column of a syntax error, and `what` the object should be."""
    if isinstance(text, dict):
        return dict(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(
            f"{where}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); give {what}."
        ) from None
    if not isinstance(data, dict):
        raise error(f"{where}: should be {what}, not a JSON {type(data).__name__}.")
    return data
