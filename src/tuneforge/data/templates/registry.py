"""Load the template records (``data/*.yaml``) and look templates up by their LLaMA-Factory-compatible names."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.data.templates.record import TemplateSpec
from tuneforge.data.templates.template import Template
from tuneforge.data.templates.tools import ToolFormat
from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    from tuneforge.config.data import DataSection

_DATA = Path(__file__).with_name("data")

logger = logging.getLogger(__name__)
PRESERVE_NEEDS_NAME = (
    "`preserve_thinking` needs a named `template:` (e.g. qwen3): the tokenizer's own chat template (template "
    "unset) decides by itself which turns keep their reasoning."
)


@cache
def _load() -> tuple[dict[str, TemplateSpec], dict[str, ToolFormat]]:
    import yaml

    formats: dict[str, ToolFormat] = {}
    specs: dict[str, TemplateSpec] = {}
    for path in sorted(_DATA.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, body in (raw.get("tool_formats") or {}).items():
            _unique(formats, name, path)
            formats[name] = ToolFormat(name=name, **(body or {}))
        for name, body in (raw.get("templates") or {}).items():
            _unique(specs, name, path)
            specs[name] = TemplateSpec.from_dict(name, body or {})
    for spec in specs.values():
        if spec.tool_format not in formats:
            raise ValueError(f"template {spec.name!r}: unknown tool_format {spec.tool_format!r}")
    for name, fmt in formats.items():
        if fmt.extract_also and fmt.extract_also not in formats:
            raise ValueError(f"tool format {name!r}: unknown extract_also {fmt.extract_also!r}")
        if fmt.extract_also:
            formats[name] = replace(fmt, fallback=formats[fmt.extract_also])
    return specs, formats


def _unique(seen: dict, name: str, path: Path) -> None:
    if name in seen:
        raise ValueError(f"{path.name}: {name!r} is defined twice in the template data")


def list_templates() -> list[str]:
    """All registered template names, sorted."""
    return sorted(_load()[0])


def list_tool_formats() -> list[str]:
    """All registered tool-format names, sorted."""
    return sorted(_load()[1])


def get_tool_format(name: str) -> ToolFormat:
    """The tool format record ``name`` (a ``KeyError`` for unknown names: callers pass validated names)."""
    return _load()[1][name]


def get_spec(name: str) -> TemplateSpec:
    """The raw record of template ``name`` (raises ``ConfigError`` naming close matches when unknown)."""
    specs = _load()[0]
    if name not in specs:
        import difflib

        close = difflib.get_close_matches(name, specs, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"template: unknown chat template {name!r}.{hint} Known: {', '.join(sorted(specs))} "
            "(`tuneforge data templates` lists them with descriptions)"
        )
    return specs[name]


def get_template(
    name: str | None,
    tokenizer: Any = None,
    *,
    enable_thinking: bool | None = True,
    default_system: str | None = None,
    tool_format: str | None = None,
    preserve_thinking: bool = False,
) -> Template:
    """Return the chat template ``name`` bound to its options.

    ``name=None`` wraps the tokenizer's own Jinja chat template (``tokenizer.chat_template``). When a
    tokenizer is given, its bos/eos strings fill templates whose record leaves them empty (alpaca, vicuna...).
    ``default_system`` replaces the record's default system prompt; ``tool_format`` picks another tool format.
    ``preserve_thinking`` keeps the reasoning of every assistant turn, not only those the record keeps.
    """
    if name is None and preserve_thinking:
        raise ConfigError(PRESERVE_NEEDS_NAME)
    if name is None:
        from tuneforge.data.templates.hf import tokenizer_template

        return tokenizer_template(tokenizer, enable_thinking=enable_thinking, default_system=default_system)
    spec = get_spec(name)
    formats = _load()[1]
    if tool_format is not None and tool_format not in formats:
        raise ConfigError(f"tool_format: unknown {tool_format!r}; known: {', '.join(sorted(formats))}")
    changes: dict[str, Any] = {}
    if default_system is not None:
        changes["default_system"] = default_system
    if tokenizer is not None:
        changes["bos"] = spec.bos or (getattr(tokenizer, "bos_token", None) or "")
        changes["eos"] = spec.eos or (getattr(tokenizer, "eos_token", None) or "")
    if preserve_thinking and spec.thinking is not None:
        changes["thinking"] = replace(spec.thinking, keep="all")
    elif preserve_thinking:
        logger.warning("`preserve_thinking` has no effect: template %r writes no reasoning.", name)
    spec = replace(spec, **changes)
    return Template(spec, formats[tool_format or spec.tool_format], enable_thinking)


def template_for_config(data: DataSection, tokenizer: Any) -> Template:
    """The template a config's `data` section asks for (`template`, `enable_thinking`, `default_system`,
    `tool_format`), unchecked; `mismatch.checked_template` is what training, inference and export call."""
    return get_template(
        data.template,
        tokenizer,
        enable_thinking=data.enable_thinking,
        default_system=data.default_system,
        tool_format=data.tool_format,
        preserve_thinking=data.preserve_thinking,
    )
