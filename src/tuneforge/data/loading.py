"""Read a dataset's raw rows: local files and folders (json, jsonl, csv, parquet, arrow, txt) or the hub.

Local files are read directly (Python's json, pyarrow) rather than through `datasets.load_dataset`, which
would copy every file into its own Arrow cache first; rows come back as dicts numbered from 1 in file order
(JSON-lines and text files: the line number).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.registry import DatasetAttr
from tuneforge.data.report import RowReport
from tuneforge.errors import DataError

FILE_TYPES = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
}


@dataclass
class RawRows:
    """A dataset's rows in file order, each with its 1-based row (or line) number."""

    name: str
    rows: list[dict[str, Any]]
    numbers: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, indices: list[int]) -> RawRows:
        """Rows at `indices` (may repeat), keeping their original numbers."""
        return RawRows(self.name, [self.rows[i] for i in indices], [self.numbers[i] for i in indices])


def data_files(attr: DatasetAttr) -> list[Path]:
    """The local files behind a file dataset (a folder expands to its files of one type, sorted)."""
    path = Path(attr.location)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_TYPES)
        if not files:
            raise DataError(f"Dataset {attr.name!r}: folder {path} holds no {'/'.join(sorted(FILE_TYPES))} file.")
        kinds = {FILE_TYPES[p.suffix.lower()] for p in files}
        if len(kinds) > 1:
            raise DataError(f"Dataset {attr.name!r}: folder {path} mixes file types {sorted(kinds)}; keep one.")
        return files
    if not path.is_file():
        raise DataError(f"Dataset {attr.name!r}: file {path} does not exist (check dataset_dir and file_name).")
    if path.suffix.lower() not in FILE_TYPES:
        raise DataError(
            f"Dataset {attr.name!r}: cannot read {path.name}; supported extensions: {', '.join(sorted(FILE_TYPES))}."
        )
    return [path]


def read_dataset(attr: DatasetAttr, report: RowReport) -> RawRows:
    """All rows of one dataset (local or hub), before `num_samples` / `max_samples`."""
    if attr.source == "file":
        rows: list[dict[str, Any]] = []
        numbers: list[int] = []
        for path in data_files(attr):
            for number, row in read_file(path, attr.name, report):
                rows.append(row)
                numbers.append(number)
        return RawRows(attr.name, rows, numbers)
    rows = read_hub(attr)
    return RawRows(attr.name, rows, list(range(1, len(rows) + 1)))


def read_file(path: Path, name: str, report: RowReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (row number, row) from one local file."""
    kind = FILE_TYPES[path.suffix.lower()]
    if kind == "json":
        yield from _read_json(path, name, report)
    elif kind == "text":
        yield from _read_text(path)
    else:
        yield from enumerate(_read_table(path, kind, name).to_pylist(), start=1)


def _read_json(path: Path, name: str, report: RowReport) -> Iterator[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip()[:1] == "[":
        yield from _read_json_array(text, path, name, report)
    else:
        yield from _read_json_lines(text, name, report)


def _read_json_array(text: str, path: Path, name: str, report: RowReport) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"Dataset {name!r}: {path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno} "
            f"(byte {err.pos} of {len(text.encode('utf-8'))}). Is the file truncated?"
        ) from err
    for number, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            yield number, row
        else:
            report.bad(name, number, f"row is a {type(row).__name__}, expected a JSON object")


def _read_json_lines(text: str, name: str, report: RowReport) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            report.bad(name, number, f"invalid JSON: {err.msg} at column {err.colno}")
            continue
        if isinstance(row, dict):
            yield number, row
        else:
            report.bad(name, number, f"line holds a {type(row).__name__}, expected a JSON object")


def _read_text(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, {"text": line}


def _read_table(path: Path, kind: str, name: str) -> Any:
    import pyarrow as pa

    try:
        if kind == "csv":
            import pyarrow.csv as pa_csv

            return pa_csv.read_csv(path)
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                return pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"Dataset {name!r}: cannot read {path} as {kind}: {err}") from err


def hub_offline() -> bool:
    """True when the user asked for offline mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE)."""
    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(f, "").strip().lower() in ("1", "true", "yes", "on") for f in flags)


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "")
    if endpoint:
        host = endpoint.split("://")[-1].split("/")[0].split(":")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def read_hub(attr: DatasetAttr) -> list[dict[str, Any]]:
    """Rows of a hub dataset via `datasets`; a clear DataError when offline or the source is unsupported."""
    if attr.source != "hf_hub":
        raise DataError(
            f"Dataset {attr.name!r} comes from {attr.source} ({attr.location}), which tuneforge cannot load; "
            "download it and register it with `file_name` in dataset_info.json."
        )
    if hub_offline():
        raise DataError(
            f"Dataset {attr.name!r} is on the Hugging Face Hub ({attr.location}) but offline mode is on "
            "(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE); download it and register it with `file_name`."
        )
    if not _hub_reachable():
        raise DataError(f"Dataset {attr.name!r}: the Hugging Face Hub is unreachable (needed for {attr.location}).")
    import datasets

    try:
        ds = datasets.load_dataset(attr.location, name=attr.subset, data_dir=attr.folder, split=attr.split)
    except Exception as err:  # datasets raises many unrelated types for one cause: report them all as data errors
        raise DataError(f"Dataset {attr.name!r}: loading {attr.location} from the hub failed: {err}") from err
    return ds.to_list()


def sample_rows(raw: RawRows, num_samples: int | None, max_samples: int | None, seed: int) -> RawRows:
    """Apply a registry entry's `num_samples` (random, with replacement past the end) then `max_samples`."""
    import numpy as np

    if num_samples is not None and len(raw):
        rng = np.random.default_rng(seed)
        indices = rng.permutation(len(raw))[:num_samples].tolist()
        if num_samples > len(raw):
            indices += rng.choice(len(raw), num_samples - len(raw)).tolist()
        raw = raw.select(indices)
    if max_samples is not None and max_samples < len(raw):
        raw = raw.select(list(range(max_samples)))
    return raw
