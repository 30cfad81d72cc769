"""Per-request decoding state inside a batch: generated ids, penalties, text stream and finish checks."""

from __future__ import annotations

from typing import Any

from tuneforge.infer.detok import IncrementalDetokenizer, StopMatcher
from tuneforge.infer.requests import Failed, Finished, GenerationRequest, TextDelta
from tuneforge.infer.sampling import make_generator


class Row:
    """One request being decoded: picks its tokens, turns them into text and decides when it is done."""

    def __init__(self, request: GenerationRequest, tokenizer: Any, vocab_size: int, max_total: int) -> None:
        import torch

        params = request.params
        self.request = request
        self.generated: list[int] = []
        self.done = False
        self._stop_ids = set(params.stop_token_ids)
        self._limit = min(params.max_new_tokens, max(max_total - len(request.prompt_ids), 1))
        self._generator = make_generator(params.seed)
        needs_counts = params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty
        self._counts = torch.zeros(vocab_size) if needs_counts else None
        self._detok = IncrementalDetokenizer(tokenizer, params.skip_special_tokens)
        self._stops = StopMatcher(params.stop)

    @property
    def sampling_state(self) -> tuple[Any, Any, Any]:
        """(params, token counts or None, generator) for `sample_batch`."""
        return self.request.params, self._counts, self._generator

    def record(self, token: int) -> None:
        """Count a sampled token for the penalties."""
        if self._counts is not None:
            self._counts[token] += 1

    def accept(self, token: int) -> None:
        """Stream the token's text, or finish the row on a stop token, stop string or length limit."""
        if self.request.cancelled.is_set():
            self.finish("cancelled")
            return
        if token in self._stop_ids:
            self.finish("stop")
            return
        self.generated.append(token)
        text, stopped = self._stops.feed(self._detok.push(token))
        if text:
            self.request.emit(TextDelta(text, (token,)))
        if stopped:
            self.finish("stop", flush=False)
        elif len(self.generated) >= self._limit:
            self.finish("length")

    def finish(self, reason: str, flush: bool = True) -> None:
        """Emit the held-back text (unless a stop string cut it) and the Finished event, once."""
        if self.done:
            return
        self.done = True
        if flush and reason != "cancelled":
            tail, stopped = self._stops.feed(self._detok.flush())
            tail += "" if stopped else self._stops.flush()
            if tail:
                self.request.emit(TextDelta(tail))
        self.request.emit(Finished(reason, len(self.request.prompt_ids), len(self.generated)))

    def fail(self, error: BaseException) -> None:
        """Report an engine error for this row."""
        if not self.done:
            self.done = True
            self.request.emit(Failed(error))
