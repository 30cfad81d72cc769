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
# each chunk of a conversation as the texts to encode and the added-token ids between them; is-response flags
Plan = tuple[list[list[int | str]], list[bool]]
_MAX_RENDERS = 200_000
_MAX_RECENT = 20_000  # conversations remembered by object between the record and the serve pass


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
        self._renders: dict[bytes, Plan] = {}
        self._recent: dict[int, tuple[Any, Any, Any, Plan]] = {}
        self.pieces = PieceSplitter.for_tokenizer(tok.tokenizer) if self.fast else None

    def pairs(self, messages: list[dict], system: str | None, tools: list | None) -> list[Pair]:
        """One (prompt_ids, response_ids) pair per assistant turn."""
        if not self.fast:
            return self.template.encode_turns(self.tok, messages, system=system, tools=tools)
        chunks, responses = self._plan(messages, system, tools)
        tok = self.tok
        if tok.recording:
            tok.want([item for chunk in chunks for item in chunk if isinstance(item, str)])
            return [([0], [0])]
        ids: list[int] = []
        cuts: list[int] = []
        for chunk in chunks:
            for item in chunk:
                if isinstance(item, str):
                    ids += tok.ids(item)
                else:
                    ids.append(item)
            cuts.append(len(ids))
        return group_pairs(ids, cuts, responses)

    def prompt(self, messages: list[dict], system: str | None, tools: list | None) -> list[int]:
        """Ids of the conversation followed by the generation prompt."""
        return self.template.encode_prompt(self.tok, messages, system=system, tools=tools)

    def _plan(self, messages: list[dict], system: str | None, tools: list | None) -> Plan:
        """The rendered chunks of a conversation, split for encoding: from the previous call with these very
        objects (the serve pass after the record pass), else by content, else rendered now."""
        recent = self._recent.get(id(messages))
        if recent is not None and recent[0] is messages and recent[1] is system and recent[2] is tools:
            return recent[3]
        key = pickle.dumps((messages, system, tools), 5)
        plan = self._renders.get(key)
        if plan is None:
            if len(self._renders) > _MAX_RENDERS:
                self._renders.clear()
            plan = self._renders[key] = self._render(messages, system, tools)
        if len(self._recent) > _MAX_RECENT:
            self._recent.clear()
        self._recent[id(messages)] = (messages, system, tools, plan)  # holding `messages` keeps its id unique
        return plan

    def _render(self, messages: list[dict], system: str | None, tools: list | None) -> Plan:
        segments = self.template.segments(messages, system, tools)
        while segments and not segments[-1].response:
            segments.pop()
        texts, responses = side_chunks(segments)
        if self.pieces is None:
            return [[text] for text in texts], responses
        return [self.pieces.split(text) for text in texts], responses
