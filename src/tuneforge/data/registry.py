"""Which datasets to load: `dataset_info.json` (read as LLaMA-Factory does), inline entries and plain paths.

`dataset` in the config may be a comma-separated string of names, a list of names, or a list of inline
entries (dicts with the same attributes as a registry entry plus `path` for a local file or folder). A
name that is not in the registry but is an existing path is loaded as a plain file with its format
detected from the first row.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError
from tuneforge.files import json_object

logger = logging.getLogger("tuneforge.data")

REGISTRY_FILE = "dataset_info.json"
FORMATTINGS = ("alpaca", "sharegpt", "openai")

ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None}
SHAREGPT_COLUMNS = {"messages": "conversations", "tools": None}
COMMON_COLUMNS = {
    "system": None,
    "images": None,
    "videos": None,
    "audios": None,
    "chosen": None,
    "rejected": None,
    "kto_tag": None,
}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
OPENAI_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "function",
    "system_tag": "system",
}
_SOURCE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "file_name", "path")
_OTHER_KEYS = ("formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags", "name")
ENTRY_KEYS = frozenset(_SOURCE_KEYS + _OTHER_KEYS)


@dataclass
class DatasetAttr:
    """One dataset to load: where it comes from and how its columns map to the canonical form."""

    name: str
    source: str  # "file", "hf_hub", "ms_hub", "om_hub", "script", "cloud"
    location: str  # a path for "file"/"script", a hub id or a cloud URL otherwise
    formatting: str | None = "alpaca"  # None: detect from the first row (plain paths)
    ranking: bool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    columns: dict[str, str | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def column(self, key: str) -> str | None:
        """The file's column name for a canonical key (`prompt`, `messages`, `chosen`, ...)."""
        return self.columns.get(key)

    def record(self) -> dict[str, Any]:
        """Every attribute as plain data (part of the cache key)."""
        return {k: v for k, v in self.__dict__.items()}


def split_names(value: Any) -> list[Any]:
    """`"a, b"` -> `["a", "b"]`; lists pass through; None -> []."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def load_registry(dataset_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Read `dataset_dir/dataset_info.json`; None when it does not exist."""
    path = Path(dataset_dir) / REGISTRY_FILE
    if not path.is_file():
        return None
    what = "a JSON object mapping dataset names to attributes"
    return json_object(path.read_text(encoding="utf-8"), str(path), what, DataError)


def resolve_datasets(value: Any, dataset_dir: str | os.PathLike) -> list[DatasetAttr]:
    """Turn the config's `dataset` (or `eval_dataset`) value into a list of `DatasetAttr`."""
    items = split_names(value)
    if not items:
        return []
    needs_registry = any(isinstance(it, str) for it in items)
    registry = load_registry(dataset_dir) if needs_registry else None
    attrs = []
    for item in items:
        if isinstance(item, dict):
            attrs.append(_from_inline(item, dataset_dir))
        elif isinstance(item, str):
            attrs.append(_from_name(item, registry, dataset_dir))
        else:
            raise DataError(f"dataset entries must be names or mappings, got {type(item).__name__}: {item!r}")
    return attrs


def _from_name(name: str, registry: dict[str, Any] | None, dataset_dir: str | os.PathLike) -> DatasetAttr:
    if str(dataset_dir) == "ONLINE":
        return _build(name, {"hf_hub_url": name}, dataset_dir)
    if registry is not None and name in registry:
        entry = registry[name]
        if not isinstance(entry, dict):
            raise DataError(f"{Path(dataset_dir) / REGISTRY_FILE}: entry {name!r} must be an object.")
        return _build(name, entry, dataset_dir)
    for candidate in (Path(name), Path(dataset_dir) / name):
        if candidate.exists():
            return _build(name, {"path": str(candidate)}, dataset_dir, detect=True)
    raise DataError(_unknown_message(name, registry, dataset_dir))


def _unknown_message(name: str, registry: dict[str, Any] | None, dataset_dir: str | os.PathLike) -> str:
    reg_path = Path(dataset_dir) / REGISTRY_FILE
    if registry is None:
        return (
            f"Dataset {name!r} is neither an existing file nor registered: {reg_path} does not exist. "
            "Set dataset_dir to the folder holding dataset_info.json, or give a path to a data file."
        )
    close = difflib.get_close_matches(name, list(registry), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"Dataset {name!r} is not registered in {reg_path} and is not an existing path.{hint}"


def _from_inline(entry: dict[str, Any], dataset_dir: str | os.PathLike) -> DatasetAttr:
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise DataError(f"Inline dataset entry {entry!r}: unknown key(s) {unknown}; valid keys: {sorted(ENTRY_KEYS)}.")
    if not any(k in entry for k in _SOURCE_KEYS):
        raise DataError(f"Inline dataset entry {entry!r} needs a source: `path`, `file_name` or `hf_hub_url`.")
    name = str(entry.get("name") or entry.get("path") or entry.get("file_name") or entry.get("hf_hub_url"))
    return _build(name, entry, dataset_dir, detect="formatting" not in entry)


def _source(name: str, entry: dict[str, Any], dataset_dir: str | os.PathLike) -> tuple[str, str]:
    hf, ms, om = entry.get("hf_hub_url"), entry.get("ms_hub_url"), entry.get("om_hub_url")
    if hf or ms or om:
        if ms and (os.environ.get("USE_MODELSCOPE_HUB", "0").lower() in ("1", "true") or not hf):
            return "ms_hub", ms
        if om and (os.environ.get("USE_OPENMIND_HUB", "0").lower() in ("1", "true") or not hf):
            return "om_hub", om
        return "hf_hub", hf
    if entry.get("script_url"):
        return "script", str(Path(dataset_dir) / entry["script_url"])
    if entry.get("cloud_file_name"):
        return "cloud", entry["cloud_file_name"]
    if entry.get("path"):
        return "file", str(entry["path"])
    if entry.get("file_name"):
        return "file", str(Path(dataset_dir) / entry["file_name"])
    raise DataError(f"Dataset {name!r} has no source (file_name, hf_hub_url, ms_hub_url, script_url, ...).")


def _build(name: str, entry: dict[str, Any], dataset_dir: str | os.PathLike, detect: bool = False) -> DatasetAttr:
    source, location = _source(name, entry, dataset_dir)
    formatting = entry.get("formatting", None if detect else "alpaca")
    if formatting is not None and formatting not in FORMATTINGS:
        raise DataError(f"Dataset {name!r}: formatting {formatting!r} is not one of {FORMATTINGS}.")
    num_samples = entry.get("num_samples")
    attr = DatasetAttr(
        name=name,
        source=source,
        location=location,
        formatting=formatting,
        ranking=bool(entry.get("ranking", False)),
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        folder=entry.get("folder"),
        num_samples=int(num_samples) if num_samples is not None else None,
    )
    _check_mapping(name, entry, "columns")
    _check_mapping(name, entry, "tags")
    if formatting is not None:
        apply_formatting(attr, formatting, entry.get("columns") or {}, entry.get("tags") or {})
    else:
        attr.columns, attr.tags = dict(entry.get("columns") or {}), dict(entry.get("tags") or {})
    return attr


def _check_mapping(name: str, entry: dict[str, Any], key: str) -> None:
    if entry.get(key) is not None and not isinstance(entry[key], dict):
        raise DataError(f"Dataset {name!r}: `{key}` must be a mapping, got {entry[key]!r}.")


def apply_formatting(attr: DatasetAttr, formatting: str, columns: dict, tags: dict) -> None:
    """Fill column and tag defaults for `formatting`, then the entry's own overrides."""
    attr.formatting = formatting
    base = dict(COMMON_COLUMNS)
    if formatting == "alpaca":
        base.update(ALPACA_COLUMNS)
    else:
        base.update(SHAREGPT_COLUMNS)
        if formatting == "openai":
            base["messages"] = "messages"
    base.update(columns)
    attr.columns = base
    attr.tags = {**(OPENAI_TAGS if formatting == "openai" else SHAREGPT_TAGS), **tags}
