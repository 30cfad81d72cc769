"""Tokenize rendered conversations piece by piece: split at added tokens, encode each distinct piece once.

A fast tokenizer splits its input at added tokens first and tokenizes the text between them
independently; doing that split ourselves lets pieces shared by many rows (the system prompt, role headers)
be encoded once. It is only used where it is provably the same: a fast tokenizer whose added tokens have no
lstrip / rstrip / single_word / normalized flags, that does not split special tokens, and whose
normalizer / pre-tokenizer adds nothing at the start of a sequence (no Metaspace, Prepend or
add_prefix_space). Everything else tokenizes the whole text.
"""

from __future__ import annotations

import re
from typing import Any


class PieceSplitter:
    """Splits text at the tokenizer's added tokens (longest match first, as the tokenizer does)."""

    def __init__(self, pattern: re.Pattern[str], ids: dict[str, int]) -> None:
        self.pattern = pattern
        self.ids_of = ids

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> PieceSplitter | None:
        """A splitter when piecewise tokenization equals whole-text tokenization for `tokenizer`, else None."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(tokenizer, "split_special_tokens", False):
            return None
        described = f"{backend.normalizer!r} {backend.pre_tokenizer!r}"
        if any(marker in described for marker in ("Metaspace", "Prepend", "add_prefix_space=True")):
            return None
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        ids: dict[str, int] = {}
        for token_id, token in added.items():
            flags = (getattr(token, name, True) for name in ("lstrip", "rstrip", "single_word", "normalized"))
            if any(flags):
                return None
            ids[str(getattr(token, "content", token))] = int(token_id)
        if not ids:
            return None
        alternatives = "|".join(re.escape(t) for t in sorted(ids, key=len, reverse=True))
        return cls(re.compile(f"({alternatives})"), ids)

    def split(self, text: str) -> list[int | str]:
        """`text` as a list of added-token ids and the (non-empty) texts between them, in order; the texts are
        what the tokenizer would encode on their own."""
        out: list[int | str] = []
        for index, piece in enumerate(self.pattern.split(text)):
            if index % 2:  # an added token: one id
                out.append(self.ids_of[piece])
            elif piece:
                out.append(piece)
        return out
