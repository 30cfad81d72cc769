"""Building blocks shared by every config section: the base class and the field helper.

A field's description is the single source of its help text: the CLI, the JSON schema, the generated
docs and validation hints all read it from here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_SAME: Any = object()


def F(default: Any, description: str, *, lf_default: Any = _SAME, why: str | None = None, **kwargs: Any) -> Any:
    """Declare a config field.

    `lf_default` records LLaMA-Factory's default where tuneforge deliberately differs (or where the key
    is tuneforge's own: pass `lf_default=None`); `why` says why the tuneforge default is better.
    """
    extra: dict[str, Any] = {}
    if lf_default is not _SAME:
        extra["lf_default"] = lf_default
    if why:
        extra["why"] = why
    return Field(default, description=description, json_schema_extra=extra or None, **kwargs)


class Section(BaseModel):
    """A group of related config keys; unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def changed(self) -> dict[str, Any]:
        """The keys whose value differs from the default."""
        return {k: getattr(self, k) for k in type(self).model_fields if k in self.model_fields_set}
