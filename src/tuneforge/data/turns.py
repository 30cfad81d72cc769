"""Conversation -> (prompt_ids, response_ids) pairs, fast: one render per distinct conversation.

`Turns` gives the same pairs as `Template.encode_turns` (a test checks this on every demo dataset) but
renders each distinct conversation once, tokenizes it through the batching `MemoTokenizer` (piece by piece
between added tokens where that is exact, see `pieces.py`), and cuts the ids at segment boundaries with a
binary search on token start offsets. Templates that override
`encode_turns` are called as they are.
"""

from __future__ import annotations

import bisect
import pickle
from typing import Any

from tuneforge.data.pieces import PieceSplitter
from tuneforge.data.templates.template import group_pairs
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
        self._renders: dict[bytes, tuple[str, list[tuple[int, bool]]]] = {}
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
        text, bounds = found
        if self.tok.recording:
            self.pieces.record(self.tok, text) if self.pieces else self.tok.ids_and_starts(text)
            return [([0], [0])]
        ends = [end for end, _ in bounds]
        if self.pieces:
            ids, cuts = self.pieces.encode(self.tok, text, ends)
        else:
            ids, starts = self.tok.ids_and_starts(text)
            cuts = [bisect.bisect_left(starts, end) for end in ends]
        return group_pairs(ids, cuts, [is_response for _, is_response in bounds], self.eos)

    def prompt(self, messages: list[dict], system: str | None, tools: list | None) -> list[int]:
        """Ids of the conversation followed by the generation prompt."""
        return self.template.encode_prompt(self.tok, messages, system=system, tools=tools)

    def _render(self, messages: list[dict], system: str | None, tools: list | None) -> tuple[str, list]:
        segments = self.template.segments(messages, system, tools)
        while segments and not segments[-1].response:
            segments.pop()
        bounds: list[tuple[int, bool]] = []
        position = 0
        for segment in segments:
            position += len(segment.text)
            if bounds and bounds[-1][1] == segment.response:
                bounds[-1] = (position, segment.response)
            else:
                bounds.append((position, segment.response))
        return "".join(s.text for s in segments), bounds
