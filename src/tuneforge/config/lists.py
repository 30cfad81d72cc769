"""List-valued config keys: LLaMA-Factory writes them comma-separated (`a, b`); YAML lists are accepted too."""

from __future__ import annotations

from collections.abc import Iterable


def split_list(value: str | Iterable[str] | None) -> list[str]:
    """The non-empty, stripped items of a comma-separated string or a list (empty for None / "")."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if p.strip()]


def join_list(items: Iterable[str]) -> str:
    """The comma form LLaMA-Factory reads back."""
    return ",".join(items)
