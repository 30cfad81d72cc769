"""Building blocks shared by every config section: the base class, the field helper and the wiring classes.

A field's description is the single source of its help text: the CLI, the JSON schema, the generated
docs and validation hints all read it from here. Next to it, `wiring=` says what setting the key does:
`ACTS` (it changes behaviour), `refused(...)` (a non-default value stops the run with what to use instead)
or `no_op(...)` (a non-default value is accepted with a one-line warning saying why it has no effect).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

_SAME: Any = object()

WiringClass = Literal["acts", "refused", "no-op"]


@dataclass(frozen=True)
class Wiring:
    """What setting a key does: it acts, it is refused (`text`: what to use instead) or it is a no-op (`text`: why)."""

    kind: WiringClass
    text: str = ""

    def label(self) -> str:
        """Short form for tables: `acts`, `refused: ...`, `no-op: ...`."""
        return self.kind if not self.text else f"{self.kind}: {self.text}"


ACTS = Wiring("acts")


def refused(instead: str) -> Wiring:
    """A key whose non-default value stops the run; `instead` says why and what to use instead."""
    return Wiring("refused", instead)


def no_op(why: str) -> Wiring:
    """A key accepted for LLaMA-Factory compatibility that has no effect here; `why` is the warning's reason."""
    return Wiring("no-op", why)


def only_with(owner: str, flag: str) -> Wiring:
    """A no-op sub-setting of a refused feature (`galore_rank` of GaLore, `use_galore`)."""
    return no_op(f"only read by {owner} (`{flag}`), which tuneforge does not implement")


def F(
    default: Any,
    description: str,
    *,
    lf_default: Any = _SAME,
    why: str | None = None,
    wiring: Wiring | None = None,
    **kwargs: Any,
) -> Any:
    """Declare a config field.

    `lf_default` records LLaMA-Factory's default where tuneforge deliberately differs (or where the key
    is tuneforge's own: pass `lf_default=None`); `why` says why the tuneforge default is better.
    `wiring` classifies the key (see the module docstring); every field must have one (a test checks).
    """
    extra: dict[str, Any] = {}
    if lf_default is not _SAME:
        extra["lf_default"] = lf_default
    if why:
        extra["why"] = why
    if wiring is not None:
        extra["wiring"] = {"kind": wiring.kind, "text": wiring.text}
    return Field(default, description=description, json_schema_extra=extra or None, **kwargs)


def wiring_of(info: Any) -> Wiring | None:
    """The wiring class recorded on a pydantic FieldInfo, or None when the field is unclassified."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    raw = extra.get("wiring")
    return Wiring(raw["kind"], raw.get("text", "")) if isinstance(raw, dict) else None


class Section(BaseModel):
    """A group of related config keys; unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _yaml_switches(cls, data: Any) -> Any:
        """YAML reads `on` / `off` as booleans: give string switches with those values their words back."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            words = _switch_words(cls, key)
            if isinstance(value, bool) and ("on" if value else "off") in words:
                out[key] = "on" if value else "off"
        return out

    def changed(self) -> dict[str, Any]:
        """The keys whose value differs from the default."""
        return {k: getattr(self, k) for k in type(self).model_fields if k in self.model_fields_set}


def _literal_values(annotation: Any) -> set[Any]:
    if get_origin(annotation) is Literal:
        return set(get_args(annotation))
    return {v for arg in get_args(annotation) for v in _literal_values(arg)}


@cache
def _switch_words(cls: type[BaseModel], key: str) -> frozenset[str]:
    """The `on` / `off` words a string field accepts (empty for other fields)."""
    info = cls.model_fields.get(key)
    values = _literal_values(info.annotation) if info is not None else set()
    return frozenset(v for v in values if v in ("on", "off"))
