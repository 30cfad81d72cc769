"""Data tab logic: read a table (CSV / JSON / JSONL / Excel), map its columns to alpaca or sharegpt fields,
register it in `dataset_info.json`, and preview registered datasets raw and tokenized."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

from tuneforge.data.registry import REGISTRY_FILE, load_registry
from tuneforge.errors import DataError
from tuneforge.files import write_json_atomic

TABLE_SUFFIXES = (".csv", ".json", ".jsonl", ".xlsx", ".xls")
# Mappable fields per formatting (the registry's canonical column keys).
MEDIA_KEYS = ("images", "videos", "audios")
MAPPABLE = {
    "alpaca": ("prompt", "query", "response", "system", "history", *MEDIA_KEYS),
    "sharegpt": ("messages", "system", "tools", *MEDIA_KEYS),
}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def read_table(path: str | Path) -> Any:
    """A pandas DataFrame of the file; DataError naming the file and what is wrong otherwise."""
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path.name}: unsupported file type {suffix or '(none)'}; use {', '.join(TABLE_SUFFIXES)}.")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix == ".jsonl":
            frame = pd.read_json(path, lines=True)
        elif suffix == ".json":
            frame = pd.read_json(path)
        else:
            frame = _read_excel(path)
    except DataError:
        raise
    except Exception as err:  # pandas raises many types for malformed files
        raise DataError(f"{path.name} could not be read as {suffix[1:].upper()}: {err}") from err
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"{path.name} has no rows or no columns.")
    return frame


def _read_excel(path: Path) -> Any:
    import importlib.util

    import pandas as pd

    if importlib.util.find_spec("openpyxl") is None:
        raise DataError(f"{path.name}: reading Excel files needs openpyxl (pip install openpyxl), or save it as CSV.")
    return pd.read_excel(path)


def build_entry(file_name: str, formatting: str, mapping: dict[str, str | None]) -> dict[str, Any]:
    """The dataset_info.json entry for `file_name` with `mapping` (canonical key -> file column)."""
    if formatting not in MAPPABLE:
        raise DataError(f"formatting {formatting!r}: choose one of {', '.join(MAPPABLE)}.")
    columns = {key: col for key, col in mapping.items() if col and key in MAPPABLE[formatting]}
    needed = "messages" if formatting == "sharegpt" else "prompt"
    if needed not in columns:
        raise DataError(f"Map a column to `{needed}`: a {formatting} dataset needs it.")
    if formatting == "alpaca" and "response" not in columns:
        raise DataError("Map a column to `response`: an alpaca dataset for sft needs the answers.")
    entry: dict[str, Any] = {"file_name": file_name, "columns": columns}
    if formatting != "alpaca":
        entry["formatting"] = formatting
    return entry


def role_tags(frame: Any, column: str | None) -> dict[str, str]:
    """The entry's `tags` when the table's conversations are `{"role", "content"}` turns (LF's `mllm_demo` style);
    {} for sharegpt's default `{"from", "value"}` turns."""
    from tuneforge.data.registry import OPENAI_TAGS

    turns = frame[column].iloc[0] if column and column in frame.columns and len(frame) else None
    if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "role" in turns[0]:
        return {k: OPENAI_TAGS[k] for k in ("role_tag", "content_tag", "user_tag", "assistant_tag")}
    return {}


def check_columns(frame: Any, mapping: dict[str, str | None]) -> None:
    """Refuse a mapping naming a column the table does not have."""
    missing = [col for col in mapping.values() if col and col not in frame.columns]
    if missing:
        raise DataError(f"Columns not in the file: {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}.")


def register_dataset(
    dataset_dir: str | Path, name: str, source: str | Path, entry: dict[str, Any], overwrite: bool = False
) -> Path:
    """Write the table to `dataset_dir/<name>.json` (JSON records) and add `name` to dataset_info.json.

    Other entries are kept; an existing name is refused unless `overwrite`. Returns the registry path.
    """
    if not NAME_PATTERN.match(name or ""):
        raise DataError(f"Dataset name {name!r}: use letters, digits, '_', '-', '.' (up to 64 characters).")
    folder = Path(dataset_dir)
    registry = load_registry(folder) or {}
    if name in registry and not overwrite:
        raise DataError(f"{name!r} is already in {folder / REGISTRY_FILE}; tick 'overwrite' to replace it.")
    target = folder / f"{name}.json"
    folder.mkdir(parents=True, exist_ok=True)
    _write_records(read_table(source), target, source)
    write_json_atomic(folder / REGISTRY_FILE, {**registry, name: {**entry, "file_name": target.name}})
    return folder / REGISTRY_FILE


def _write_records(frame: Any, target: Path, source: str | Path) -> None:
    if Path(source).resolve() == target.resolve():
        return
    if Path(source).suffix.lower() == ".json":  # already JSON records: keep the file byte for byte
        shutil.copyfile(source, target)
        return
    records = json.loads(frame.to_json(orient="records", force_ascii=False))
    write_json_atomic(target, records)


def dataset_names(dataset_dir: str | Path) -> list[str]:
    """Names in the folder's dataset_info.json (empty when there is none or it is unreadable)."""
    try:
        return sorted(load_registry(dataset_dir) or {})
    except DataError:
        return []


def raw_rows(dataset_dir: str | Path, name: str, n: int = 3) -> list[dict[str, Any]]:
    """The first `n` rows of a registered dataset as the loader reads them."""
    from tuneforge.data.loading import read_dataset
    from tuneforge.data.report import RowReport

    return read_dataset(_attr(dataset_dir, name), RowReport()).rows[:n]


def _attr(dataset_dir: str | Path, name: str) -> Any:
    from tuneforge.data.registry import resolve_datasets

    (attr,) = resolve_datasets(name, dataset_dir)
    return attr


def rows_media(
    dataset_dir: str | Path, name: str, rows: list[dict[str, Any]], media_dir: str | Path | None = None
) -> tuple[list, str]:
    """Thumbnails of the rows' images and a Markdown list of every row's media files, for a registered dataset
    (paths resolved against `media_dir`, default `dataset_dir`, as training does)."""
    from tuneforge.webui.media import preview_media

    attr = _attr(dataset_dir, name)
    columns = {kind: attr.column(kind) for kind in MEDIA_KEYS}
    return preview_media(rows, columns, Path(media_dir or dataset_dir))


def token_preview_html(samples: list[dict[str, Any]], tokenizer: Any) -> str:
    """HTML of processed samples: trained tokens green, masked tokens grey (rich's own rendering)."""
    from tuneforge.console import make_console
    from tuneforge.data.preview import IGNORE, marked_text

    console = make_console(record=True, width=110, file=io.StringIO(), force_terminal=False)
    for index, sample in enumerate(samples):
        ids, labels = sample.get("input_ids", []), sample.get("labels") or [IGNORE] * len(sample.get("input_ids", []))
        trained = sum(1 for label in labels if label != IGNORE)
        console.print(f"sample {index}: {len(ids)} tokens, {trained} trained, {len(ids) - trained} masked")
        console.print(marked_text(tokenizer, ids, labels))
    return console.export_html(inline_styles=True, code_format="<pre style='white-space:pre-wrap'>{code}</pre>")
