"""Reading raw config values, remembering where each came from (file and line, or the command line)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One raw key/value and where the user wrote it."""

    value: Any
    origin: str

    def where(self) -> str:
        """Human-readable origin, e.g. `train.yaml line 12` or `the command line`."""
        return self.origin


def read_yaml(path: str | Path) -> dict[str, Entry]:
    """Parse a YAML (or JSON) config file into flat entries carrying their line numbers."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist (or is not a file). Check the path you passed.")
    text = path.read_text(encoding="utf-8-sig")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{path}{line}: YAML syntax error: {err.problem or err}. "
            "Check indentation, the colon after each key and quoting of values with ':' or '#'."
        ) from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: the config must be a mapping of `key: value` lines, not a {root.tag}.")
    return _entries_from_mapping(root, path, prefix="")


def _entries_from_mapping(node: yaml.MappingNode, path: Path, prefix: str) -> dict[str, Entry]:
    constructor = yaml.SafeLoader("")
    entries: dict[str, Entry] = {}
    for key_node, value_node in node.value:
        key = str(constructor.construct_object(key_node, deep=True))
        where = f"{path} line {key_node.start_mark.line + 1}"
        if key in entries:
            raise ConfigError(f"{where}: key `{key}` is set twice (first at {entries[key].origin}). Keep one of them.")
        value = constructor.construct_object(value_node, deep=True)
        entries[prefix + key] = Entry(value, where)
    return entries


def parse_overrides(args: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Entry]:
    """Parse command-line overrides: `key=value`, `--key value`, `--key=value` or a bare `--flag` (true)."""
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return {str(k): Entry(v, "the overrides") for k, v in args.items()}
    out: dict[str, Entry] = {}
    items = list(args)
    i = 0
    while i < len(items):
        token = items[i]
        if token.startswith("--"):
            body = token[2:]
            if "=" in body:
                key, raw = body.split("=", 1)
            elif i + 1 < len(items) and not items[i + 1].startswith("--"):
                key, raw = body, items[i + 1]
                i += 1
            else:
                key, raw = body, "true"
            key = key.replace("-", "_")
        elif "=" in token:
            key, raw = token.split("=", 1)
        else:
            raise ConfigError(
                f"Command-line argument `{token}` is neither `key=value` nor `--key value`. "
                "Example: `tuneforge train cfg.yaml lora_rank=16 --learning_rate 5e-5`."
            )
        out[key.strip()] = Entry(_parse_scalar(raw), f"the command line (`{token}`)")
        i += 1
    return out


def _parse_scalar(raw: str) -> Any:
    """Interpret an override value the way YAML would (numbers, booleans, null, lists), else keep the string."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        return raw.strip()
    return value
