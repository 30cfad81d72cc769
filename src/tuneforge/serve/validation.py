"""Checks every request passes before any work: valid Unicode everywhere, tool schemas that are JSON Schema.

Errors are pydantic custom errors carrying the offending field as `ctx["param"]`, so the API's 400 names it.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticCustomError


def invalid(param: str, detail: str) -> PydanticCustomError:
    """A validation error whose 400 answer names `param`."""
    return PydanticCustomError("invalid_request", "{param}: {detail}", {"param": param, "detail": detail})


def check_unicode(data: Any) -> None:
    """Raise `invalid` naming the first string (value or key) holding a lone surrogate (not valid Unicode).

    Walks without recursion, so deeply nested input cannot exhaust the stack.
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            _check_text(path or "body", value)
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    _check_text(child, key)
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value))


def _check_text(path: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise invalid(
            path.encode("utf-8", "backslashreplace").decode(),
            f"invalid Unicode: lone surrogate {text[error.start]!r} at character {error.start}; send UTF-8 text",
        ) from None


def check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` if it is a valid JSON Schema (its `$schema` draft, else draft 7); ValueError otherwise."""
    from jsonschema import Draft7Validator, SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema, default=Draft7Validator).check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.path) or "(top level)"
        raise ValueError(f"not a valid JSON Schema at {where}: {error.message}") from None
    except RecursionError:
        raise ValueError("the JSON Schema is nested too deeply") from None
    return schema
