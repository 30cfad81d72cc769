"""List-valued config keys. LLaMA-Factory writes them comma-separated (`a,b`); a YAML list is accepted too and
stored in that comma form, so a saved config stays readable by LLaMA-Factory. Components read the parsed list
through the sections' list properties (`cfg.model.adapters`, `cfg.method.lora_targets`, ...)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator


def split_list(value: str | Iterable[str] | None) -> list[str]:
    """The non-empty, stripped items of a comma-separated string or a list (empty for None / "")."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if p.strip()]


def _comma_form(value: Any) -> Any:
    """A YAML list becomes LLaMA-Factory's comma form; anything else is left to the field's type."""
    if isinstance(value, (list, tuple)):
        return ",".join(split_list(value))
    return value


# A `str | None` key that also takes a YAML list of strings.
CommaList = Annotated[str | None, BeforeValidator(_comma_form, json_schema_input_type=str | list[str] | None)]
CommaListStr = Annotated[str, BeforeValidator(_comma_form, json_schema_input_type=str | list[str])]
