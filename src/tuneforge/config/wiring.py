"""The wiring contract: what each config key does when set, read from the `wiring=` next to its declaration.

A key *acts* (changes behaviour), is *refused* (a non-default value stops before any work, saying what to use
instead) or is an accepted *no-op* (a non-default value loads with a one-line warning saying why it has no
effect). `check_wiring` turns a loaded config into those errors and warnings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.config.fields import Wiring, wiring_of
from tuneforge.config.root import SECTIONS, field_info

if TYPE_CHECKING:
    from tuneforge.config.root import TuneforgeConfig

Conflict = tuple[tuple[str, ...], str]


def wiring(key: str) -> Wiring | None:
    """The wiring class of a flat key (None only for a field someone forgot to classify)."""
    return wiring_of(field_info(key))


def all_wiring() -> dict[str, Wiring | None]:
    """Every config key with its wiring class, in declaration order."""
    return {key: wiring_of(info) for cls in SECTIONS.values() for key, info in cls.model_fields.items()}


def _set_keys(cfg: TuneforgeConfig) -> dict[str, object]:
    """Keys whose value differs from the declared default (setting a key to its default changes nothing)."""
    out: dict[str, object] = {}
    for name in SECTIONS:
        section = getattr(cfg, name)
        for key in section.model_fields_set:
            value = getattr(section, key)
            if value != type(section).model_fields[key].default:
                out[key] = value
    return out


def check_wiring(cfg: TuneforgeConfig) -> tuple[list[Conflict], list[Conflict]]:
    """(refusals, no-op warnings) for the keys this config sets to a non-default value."""
    refusals: list[Conflict] = []
    warnings: list[Conflict] = []
    for key, value in _set_keys(cfg).items():
        w = wiring(key)
        if w is None or w.kind == "acts":
            continue
        if w.kind == "refused":
            refusals.append(((key,), f"`{key}: {value!r}` is not supported: {w.text}."))
        else:
            warnings.append(((key,), f"has no effect: {w.text}."))
    return refusals, warnings
