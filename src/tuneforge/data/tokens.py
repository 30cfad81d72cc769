"""Fast tokenization: every distinct text is encoded once, in large batches on the Rust tokenizer.

`MemoTokenizer` stands in for the real tokenizer when a chat template encodes a conversation. In
"record" mode it only notes which texts are asked for (answering with a placeholder id); `encode_pending`
then encodes all of them in one batch call; in "serve" mode it answers from the memo (and encodes any
text it has not seen directly, so results never depend on the record pass having seen everything).
"""

from __future__ import annotations

from typing import Any

_MAX_MEMO = 400_000  # distinct texts kept between chunks; beyond this the memo starts over
IDS, OFFSETS = 0, 1  # what a memo entry holds: ids or (ids, offsets)
_PLACEHOLDER: dict[int, Any] = {IDS: [0], OFFSETS: ([0], [(0, 0)])}


class Encoding(dict):
    """The result of `MemoTokenizer.__call__`: `["input_ids"]` and `.input_ids` both work."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err


class MemoTokenizer:
    """A tokenizer proxy that batches and memoizes `encode` / `__call__` on plain text."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._memo: dict[tuple[str, bool, int], Any] = {}
        self._pending: dict[tuple[str, bool, int], None] = {}
        self.recording = False
        self.misses = 0
        self.lookups = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    @property
    def tokenizer(self) -> Any:
        """The wrapped tokenizer."""
        return self._tok

    def __len__(self) -> int:
        return len(self._tok)

    def encode(self, text: Any, add_special_tokens: bool = True, **kwargs: Any) -> list[int]:
        """Like `tokenizer.encode` for one string; other forms go to the real tokenizer."""
        if kwargs or not isinstance(text, str):
            return self._tok.encode(text, add_special_tokens=add_special_tokens, **kwargs)
        return self.ids(text, add_special_tokens)

    def __call__(self, text: Any, add_special_tokens: bool = True, **kwargs: Any) -> Any:
        """Like `tokenizer(text)` for a string or list of strings (input_ids, attention_mask, offset_mapping)."""
        offsets = bool(kwargs.get("return_offsets_mapping", False))
        plain = set(kwargs) <= {"return_offsets_mapping", "return_attention_mask"}
        if plain and isinstance(text, str):
            return self._encoding(text, add_special_tokens, offsets)
        if plain and isinstance(text, list) and all(isinstance(t, str) for t in text):
            items = [self._encoding(t, add_special_tokens, offsets) for t in text]
            return Encoding({key: [item[key] for item in items] for key in items[0]} if items else {"input_ids": []})
        return self._tok(text, add_special_tokens=add_special_tokens, **kwargs)

    def _encoding(self, text: str, add_special_tokens: bool, offsets: bool) -> Encoding:
        if not offsets:
            ids = self.ids(text, add_special_tokens)
            return Encoding(input_ids=ids, attention_mask=[1] * len(ids))
        ids, spans = self.ids_and_offsets(text, add_special_tokens)
        return Encoding(input_ids=ids, attention_mask=[1] * len(ids), offset_mapping=spans)

    def ids(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text` (from the memo when known)."""
        return self._lookup((text, add_special_tokens, IDS))

    def ids_and_offsets(self, text: str, add_special_tokens: bool = False) -> tuple[list[int], list[tuple]]:
        """Token ids of `text` with each token's (start, end) character offsets."""
        return self._lookup((text, add_special_tokens, OFFSETS))

    def _lookup(self, key: tuple[str, bool, int]) -> Any:
        if self.recording:
            if key not in self._memo:
                self._pending[key] = None
            return _PLACEHOLDER[key[2]]
        self.lookups += 1
        found = self._memo.get(key)
        if found is None:
            self.misses += 1
            found = self._memo[key] = _encode_keys(self._tok, [key])[0]
        return found

    def want(self, texts: list[str], add_special_tokens: bool = False) -> None:
        """Queue texts for the next `encode_pending` (for callers that know their texts up front)."""
        memo = self._memo
        for text in texts:
            key = (text, add_special_tokens, IDS)
            if key not in memo:
                self._pending[key] = None

    def encode_pending(self) -> None:
        """Encode every queued text, batched by (add_special_tokens, offsets)."""
        if len(self._memo) + len(self._pending) > _MAX_MEMO:
            self._memo.clear()
        for flags in {k[1:] for k in self._pending}:
            keys = [k for k in self._pending if k[1:] == flags]
            if keys:
                self._memo.update(zip(keys, _encode_keys(self._tok, keys), strict=False))
        self._pending.clear()


def _encode_keys(tokenizer: Any, keys: list[tuple[str, bool, int]]) -> list[Any]:
    """Encode memo keys that share their flags: ids or (ids, offsets)."""
    texts, add_special, mode = [k[0] for k in keys], keys[0][1], keys[0][2]
    if mode == IDS:
        return batch_encode(tokenizer, texts, add_special)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        out = tokenizer(texts, add_special_tokens=add_special, return_offsets_mapping=True)
        spans_all = out["offset_mapping"]
        pairs = [(ids, [tuple(o) for o in spans]) for ids, spans in zip(out["input_ids"], spans_all, strict=True)]
    else:
        _sync_special(tokenizer, backend)
        pairs = [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=add_special)]
    return pairs


def _sync_special(tokenizer: Any, backend: Any) -> None:
    """Match transformers: special-token strings in text are kept whole unless `split_special_tokens`."""
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    if backend.encode_special_tokens != split:
        backend.encode_special_tokens = split


def batch_encode(tokenizer: Any, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
    """Token ids for many texts in one call; uses the Rust backend directly for fast tokenizers."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]
    _sync_special(tokenizer, backend)
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [e.ids for e in encode(texts, add_special_tokens=add_special_tokens)]
