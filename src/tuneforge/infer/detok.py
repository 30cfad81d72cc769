"""Streaming text out of token ids: incremental detokenization and stop strings.

`IncrementalDetokenizer` never emits half a UTF-8 character: a byte-level token that ends inside a multi-byte
character (common for Chinese) decodes to U+FFFD, and such text is held back until the next token completes it.
`StopMatcher` cuts the stream at the first stop string, even one spanning several tokens, and never emits the
stop string itself: text that could be the beginning of a stop string is held back until it is decided.
"""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, decoding only a short window each step."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # tokens before this index have been emitted

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        """Add one token; returns the newly complete text (possibly empty)."""
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """Text still held back at the end of generation (an incomplete trailing character is dropped)."""
        return self._advance(final=True).rstrip(_REPLACEMENT)

    def _advance(self, final: bool) -> str:
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) and not final:
            return ""
        if after.endswith(_REPLACEMENT) and not final:
            return ""
        delta = after[len(before) :] if after.startswith(before) else after
        self._prefix, self._read = self._read, len(self._ids)
        return delta


class StopMatcher:
    """Finds stop strings in a text stream; `feed` returns (safe_text, stopped)."""

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self._longest = max((len(s) for s in self._stops), default=0)

    def feed(self, text: str) -> tuple[str, bool]:
        """Append `text`; returns the text that is certainly before any stop string, and whether one was hit."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        hits = [buffer.find(s) for s in self._stops if s in buffer]
        if hits:
            self._held = ""
            return buffer[: min(hits)], True
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """Held-back text once the stream ends without a stop string."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buffer: str) -> int:
        """Length of the longest tail of `buffer` that is a proper prefix of some stop string."""
        for size in range(min(self._longest - 1, len(buffer)), 0, -1):
            tail = buffer[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
