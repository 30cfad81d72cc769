"""A template record's slot text as a renderer sees it: literal text and the placeholders the target fills.

Every renderer of a record (`render.py` for token ids, `jinja.py` for tokenizers' chat templates, `gotemplate.py`
for Ollama) reads slots through these two functions, so a placeholder means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneforge.data.templates.record import PLACEHOLDER
from tuneforge.data.templates.tools import fill

if TYPE_CHECKING:
    from tuneforge.data.templates.record import TemplateSpec


@dataclass(frozen=True)
class Var:
    """A `{name}` placeholder the target language fills with one of its own expressions."""

    name: str


def record_text(spec: TemplateSpec, text: str) -> str:
    """`text` with the record's constants filled in: `{bos}`, `{eos}`, `{date}`."""
    return fill(text, bos=spec.bos, eos=spec.eos, date=spec.date)


def slot_pieces(text: str, names: Iterable[str]) -> list[str | Var]:
    """`text` cut at the placeholders named in `names`: non-empty literal strings (other placeholders stay literal
    text) and `Var`s, in order."""
    wanted, pieces, literal = set(names), [], ""
    for index, piece in enumerate(PLACEHOLDER.split(text)):
        if index % 2 and piece in wanted:
            pieces += [literal] if literal else []
            pieces.append(Var(piece))
            literal = ""
        else:
            literal += f"{{{piece}}}" if index % 2 else piece
    return pieces + ([literal] if literal else [])
