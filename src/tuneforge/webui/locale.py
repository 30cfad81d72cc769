"""UI strings as data: `locales/<lang>.json` maps keys to text; English is the reference every language covers."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALE_DIR = Path(__file__).parent / "locales"
LANGS = ("en", "zh")
DEFAULT_LANG = "en"


@cache
def strings(lang: str) -> dict[str, str]:
    """All strings of `lang` (English for an unknown language)."""
    if lang not in LANGS:
        lang = DEFAULT_LANG
    return json.loads((LOCALE_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def t(lang: str, key: str, **values: object) -> str:
    """The text of `key` in `lang` (English, then the key itself, when missing), with `{name}` filled."""
    text = strings(lang).get(key) or strings(DEFAULT_LANG).get(key) or key
    return text.format(**values) if values else text


def info(lang: str, key: str, fallback: str = "") -> str:
    """A tooltip: `info.<key>` of the language if written, else `fallback` (the config field description)."""
    return strings(lang).get(f"info.{key}") or fallback
