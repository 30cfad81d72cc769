"""Printing text that tuneforge did not write itself: dataset rows, template and tokenizer text, model output,
file paths and config values.

The one rule: such text is shown literally. It never passes through rich's markup or emoji parsing (a `[/INST]`
in a Llama-2 prompt is text, not a closing tag), and control characters other than newline and tab are shown
as escapes (`\\x1b`) so they cannot move the cursor or recolour the terminal. Our own styling is applied by
attaching a style to a piece, never by writing markup around user text.

- `shown(text)`: the string as it will appear (control characters escaped).
- `literal(text, style)`: a rich `Text` of the shown string, safe to print on any console.
- `line(*parts)`: a rich `Text` from pieces, each a plain string (user text) or a `(text, style)` pair.
- `make_console(...)`: a rich Console with markup, emoji and highlighting off.
- `markdown_literal(text)`: the shown string with Markdown and HTML syntax escaped, for the web UI's Markdown.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# C0 controls except tab and newline, DEL, C1 controls
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# every ASCII punctuation character can be backslash-escaped in CommonMark; `<` and `&` would otherwise open HTML
_MARKDOWN = re.compile(r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]""")


def shown(text: object) -> str:
    """`text` as printed: control characters (other than newline and tab) written as `\\xNN` escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def literal(text: object, style: str | None = None) -> Text:
    """A rich Text that prints `text` exactly as `shown(text)`, whatever brackets or colons it holds."""
    from rich.text import Text

    return Text(shown(text), style=style or "")


def line(*parts: Any) -> Text:
    """One line from pieces: a string is user text (literal), a `(text, style)` pair is styled, a Text is kept."""
    from rich.text import Text

    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            out.append_text(literal(part[0], part[1]))
        else:
            out.append_text(literal(part))
    return out


def make_console(**kwargs: Any) -> Console:
    """A rich Console that never interprets text: markup, emoji codes and highlighting off."""
    from rich.console import Console

    settings: dict[str, Any] = {"markup": False, "emoji": False, "highlight": False}
    return Console(**{**settings, **kwargs})


def markdown_literal(text: object) -> str:
    """`shown(text)` with every Markdown/HTML punctuation character backslash-escaped, so it renders as written."""
    return _MARKDOWN.sub(lambda m: "\\" + m.group(), shown(text))
