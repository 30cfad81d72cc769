"""A key a verb cannot work without: one message for every verb that needs it."""

from __future__ import annotations

from tuneforge.errors import ConfigError

_WHAT = {
    "model_name_or_path": "a local model folder or a Hub id",
    "output_dir": "the folder that receives the outputs",
    "export_dir": "the folder that receives the exported model",
}


def require(value: str | None, key: str, purpose: str = "") -> str:
    """`value` when it is set; otherwise a `ConfigError` naming `key`, what to give and (optionally) what for."""
    if value:
        return value
    why = f" ({purpose})" if purpose else ""
    raise ConfigError(f"`{key}` is not set; name {_WHAT.get(key, 'a value')}{why}.")
