"""Conversation -> (prompt_ids, response_ids) pairs, fast: one render per distinct conversation.

`Turns` gives the same pairs as `Template.encode_turns` (a test checks this on every demo dataset) but
renders each distinct conversation once and tokenizes its prompt and response chunks (each on its own, as
`encode_segments` does) through the batching `MemoTokenizer`, piece by piece between added tokens where
that is exact (see `pieces.py`), so text shared by many rows is encoded once. Templates that override
`encode_turns` are called as they are.
"""

from __future__ import annotations

import pickle
from typing import Any

from tuneforge.data.pieces import PieceSplitter
from tuneforge.data.templates.template import group_pairs, side_chunks
from tuneforge.data.tokens import MemoTokenizer

Pair = tuple[list[int], list[int]]
_MAX_RENDERS = 200_000


def _default_encoding(template: Any) -> bool:
    """True when the template tokenizes its `segments()` with the stock `Template.encode_turns`."""
    try:
        from tuneforge.data.templates.template import Template
    except ImportError:
        return False
    return hasattr(template, "segments") and type(template).encode_turns is Template.encode_turns


class Turns:
    """Encode conversations with a chat template through a `MemoTokenizer`."""

    def __init__(self, template: Any, tok: MemoTokenizer) -> None:
        self.template = template
        self.tok = tok
        self.fast = _default_encoding(template)
        spec = getattr(template, "spec", None)
        self.eos = tok.eos_token_id if getattr(spec, "efficient_eos", False) else None
        self._renders: dict[bytes, tuple[list[str], list[bool]]] = {}
        self.pieces = PieceSplitter.for_tokenizer(tok.tokenizer) if self.fast else None

    def pairs(self, messages: list[dict], system: str | None, tools: list | None) -> list[Pair]:
        """One (prompt_ids, response_ids) pair per assistant turn."""
        if not self.fast:
            return self.template.encode_turns(self.tok, messages, system=system, tools=tools)
        key = pickle.dumps((messages, system, tools), 5)
        found = self._renders.get(key)
        if found is None:
            if len(self._renders) > _MAX_RENDERS:
                self._renders.clear()
            found = self._renders[key] = self._render(messages, system, tools)
        texts, responses = found
        if self.tok.recording:
            for text in texts:
                self.pieces.record(self.tok, text) if self.pieces else self.tok.ids(text)
            return [([0], [0])]
        ids: list[int] = []
        cuts: list[int] = []
        for text in texts:
            ids += self.pieces.ids(self.tok, text) if self.pieces else self.tok.ids(text)
            cuts.append(len(ids))
        return group_pairs(ids, cuts, responses)

    def prompt(self, messages: list[dict], system: str | None, tools: list | None) -> list[int]:
        """Ids of the conversation followed by the generation prompt."""
        return self.template.encode_prompt(self.tok, messages, system=system, tools=tools)

    def _render(self, messages: list[dict], system: str | None, tools: list | None) -> tuple[list[str], list[bool]]:
        segments = self.template.segments(messages, system, tools)
        while segments and not segments[-1].response:
            segments.pop()
        return side_chunks(segments)
