"""Keys older transformers (and so older LLaMA-Factory YAML files) used, translated to today's names.

transformers 5 removed these `TrainingArguments` fields; a YAML that still sets one gets the same behaviour
under the new name and a one-line note, instead of an unknown-key error or a silently dropped setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneforge.config.source import Entry
from tuneforge.errors import ConfigError


def _same(value: Any) -> Any:
    return value


def _inputs_flag(value: Any) -> Any:
    return ["inputs"] if value else []


# old key -> (new key, value translation)
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "evaluation_strategy": ("eval_strategy", _same),
    "no_cuda": ("use_cpu", _same),
    "per_gpu_train_batch_size": ("per_device_train_batch_size", _same),
    "per_gpu_eval_batch_size": ("per_device_eval_batch_size", _same),
    "push_to_hub_model_id": ("hub_model_id", _same),
    "push_to_hub_token": ("hub_token", _same),
    "include_inputs_for_metrics": ("include_for_metrics", _inputs_flag),
}


def apply_renames(entries: dict[str, Entry]) -> tuple[dict[str, Entry], list[str]]:
    """Entries with old key names replaced by their new names, and a note for each replacement."""
    out: dict[str, Entry] = {}
    notes: list[str] = []
    for key, entry in entries.items():
        if key not in RENAMED:
            out[key] = entry
            continue
        new, translate = RENAMED[key]
        if new in entries:
            raise ConfigError(
                f"{entry.where()}: `{key}` is the old name of `{new}`, which is set too ({entries[new].where()}). "
                f"Keep only `{new}`."
            )
        out[new] = Entry(translate(entry.value), entry.origin)
        notes.append(f"{entry.where()}: `{key}` is the transformers 4 name of `{new}`; using it as `{new}`.")
    return out, notes
