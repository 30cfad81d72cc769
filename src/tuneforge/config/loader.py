"""Turning a YAML file, a dict and command-line overrides into one validated `TuneforgeConfig`."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuneforge.config.checks import check_consistency, check_paths
from tuneforge.config.renames import apply_renames
from tuneforge.config.root import SECTIONS, TuneforgeConfig, field_index, field_info, type_label
from tuneforge.config.source import Entry, parse_overrides, read_yaml
from tuneforge.config.wiring import check_wiring
from tuneforge.errors import ConfigError
from tuneforge.models.autotemplate import resolve_auto_template

logger = logging.getLogger(__name__)

# Keys LLaMA-Factory users write that mean the same as one of ours.
VALUE_ALIASES: dict[str, dict[Any, Any]] = {
    "quantization_method": {"bitsandbytes": "bnb", "bitsandbytes4": "bnb", "bitsandbytes8": "bnb"},
    "report_to": {None: "none"},
}


def load_config(
    source: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    paths: bool = True,
) -> TuneforgeConfig:
    """Read a config from a YAML path or a dict, apply overrides (last one wins) and validate it.

    `overrides` is a list of command-line tokens (`key=value`, `--key value`) or a dict.
    With `paths=True` the model path is checked too (exists locally, or looks like a hub id).
    Raises `ConfigError` listing every problem, each naming the key and where it was set.
    """
    entries = _collect(source)
    entries.update(_flatten_sections(parse_overrides(overrides)))
    entries, notes = apply_renames(entries)
    cfg = build_config(entries, source=str(source) if isinstance(source, (str, Path)) else None)
    refusals, no_ops = check_wiring(cfg)
    for note in notes + [
        _format_conflict(keys, msg, entries).strip(" -").replace("): ", ") ", 1) for keys, msg in no_ops
    ]:
        logger.warning(note)
    picked = resolve_auto_template(cfg)  # before the checks, which then see the template it picked
    problems = [_format_conflict(keys, msg, entries) for keys, msg in refusals + picked + check_consistency(cfg)]
    if paths:
        problems += [_format_conflict(keys, msg, entries) for keys, msg in check_paths(cfg)]
    if problems:
        raise ConfigError(_header(cfg.source) + "\n".join(problems))
    return cfg


def _collect(source: str | Path | Mapping[str, Any] | None) -> dict[str, Entry]:
    if source is None:
        return {}
    if isinstance(source, Mapping):
        raw = {str(k): Entry(v, "the config dict") for k, v in source.items()}
    else:
        raw = read_yaml(source)
    return _flatten_sections(raw)


def _flatten_sections(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Accept tuneforge's grouped form (`method: {lora_rank: 8}`) beside the flat LLaMA-Factory form."""
    out: dict[str, Entry] = {}
    for key, entry in entries.items():
        if key in SECTIONS and isinstance(entry.value, Mapping):
            out.update({str(k): Entry(v, entry.origin) for k, v in entry.value.items()})
        else:
            out[key] = entry
    return out


def build_config(entries: dict[str, Entry], source: str | None = None) -> TuneforgeConfig:
    """Validate flat entries into the typed config; every bad key or value is reported at once."""
    index = field_index()
    per_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    extra: dict[str, Any] = {}
    problems: list[str] = []
    for key, entry in entries.items():
        if key in index:
            per_section[index[key]][key] = VALUE_ALIASES.get(key, {}).get(_hashable(entry.value), entry.value)
        elif key in hf_training_keys():
            extra[key] = entry.value
        else:
            problems.append(_unknown_key(key, entry))
    sections: dict[str, Any] = {}
    for name, values in per_section.items():
        try:
            sections[name] = SECTIONS[name].model_validate(values)
        except ValidationError as err:
            problems += [_format_validation(e, entries) for e in err.errors()]
    if problems:
        raise ConfigError(_header(source) + "\n".join(problems))
    return TuneforgeConfig(**sections, training_args_extra=extra, source=source)


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else id(value)


def _header(source: str | None) -> str:
    return f"Invalid config {source}:\n" if source else "Invalid config:\n"


def _unknown_key(key: str, entry: Entry) -> str:
    candidates = sorted(set(field_index()) | hf_training_keys())
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.72)
    hint = f" Did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""
    return (
        f"  - {entry.where()}: unknown key `{key}`.{hint} "
        "List valid keys with `tuneforge config schema` or see docs/config.md."
    )


def _format_validation(error: Mapping[str, Any], entries: dict[str, Entry]) -> str:
    loc = error.get("loc") or ("?",)
    key = str(loc[0])
    entry = entries.get(key)
    where = entry.where() if entry else "the config"
    value = entry.value if entry else error.get("input")
    info = field_info(key) if key in field_index() else None
    expected = f" Expected {type_label(info.annotation)}." if info is not None else ""
    about = f" (`{key}`: {info.description})" if info is not None and info.description else ""
    return f"  - {where}: `{key}: {value!r}` is invalid: {error.get('msg')}.{expected}{about}"


def _format_conflict(keys: Sequence[str], message: str, entries: dict[str, Entry]) -> str:
    named = ", ".join(f"`{k}` ({entries[k].where()})" if k in entries else f"`{k}`" for k in keys)
    return f"  - {named}: {message}"


@cache
def hf_training_keys() -> frozenset[str]:
    """Names of Hugging Face `TrainingArguments` fields (imports transformers, so only called when needed)."""
    try:
        import dataclasses

        from transformers import TrainingArguments
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(TrainingArguments) if f.init)


def config_from_file_or_flags(path: str | None, overrides: Sequence[str]) -> TuneforgeConfig:
    """CLI helper: a config file is optional; with none, the overrides alone form the config."""
    if path is not None and "=" not in path and not path.startswith("--"):
        return load_config(path, overrides)
    tokens = ([path] if path else []) + list(overrides)
    return load_config(None, tokens)
