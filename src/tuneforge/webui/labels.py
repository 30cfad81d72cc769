"""Relabel every component when the language changes: components register the locale keys they show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneforge.webui.locale import DEFAULT_LANG, info, t


@dataclass
class Labeller:
    """Components with their locale key, and how that key applies (label, value of a button/markdown)."""

    entries: list[tuple[Any, str, str, str | None]] = field(default_factory=list)

    def add(self, component: Any, key: str, attr: str = "label", tooltip: str | None = None) -> Any:
        """Register `component` (returned, for chaining) as showing `key` in its `attr`; it shows the default
        language's text at once."""
        self.entries.append((component, key, attr, tooltip))
        for name, value in self._changes(DEFAULT_LANG, key, attr, tooltip).items():
            setattr(component, name, value)
        return component

    @staticmethod
    def _changes(lang: str, key: str, attr: str, tooltip: str | None) -> dict[str, Any]:
        changes: dict[str, Any] = {attr: t(lang, key)}
        if attr == "label" and tooltip is not None:
            text = info(lang, key.removeprefix("field."), tooltip)
            if text:
                changes["info"] = text
        return changes

    @property
    def components(self) -> list[Any]:
        """The registered components, in registration order (the outputs of a language change)."""
        return [entry[0] for entry in self.entries]

    def updates(self, lang: str) -> list[dict[str, Any]]:
        """One `gr.update` per registered component for `lang`."""
        import gradio as gr

        return [gr.update(**self._changes(lang, *entry[1:])) for entry in self.entries]
