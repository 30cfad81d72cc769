"""Per-request decoding state inside a batch, and the thread that turns its tokens into text events.

The decoding thread only does what decides the next step: count the token for the penalties, and finish the row
on a stop token, the length limit or a cancellation. Turning tokens into text (incremental detokenisation, stop
strings) and emitting events runs on an `Emitter` thread, while the decoding thread is already in the next model
forward (torch releases the GIL there). Events of one request stay in order: every message for a row goes
through the emitter's single queue. A stop string found by the emitter marks the row, and the decoding thread
drops it at its next step (tokens decoded in between are discarded, never streamed or counted).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from tuneforge.infer.delivery import deferred_wakeups
from tuneforge.infer.detok import IncrementalDetokenizer, StopMatcher
from tuneforge.infer.requests import Failed, Finished, GenerationRequest, TextDelta
from tuneforge.infer.sampling import make_generator

logger = logging.getLogger(__name__)


class Emitter:
    """A thread running batches of row messages in order; `post` is cheap and never blocks."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tuneforge-emitter", daemon=True)
        self._thread.start()

    def post(self, messages: list[tuple[Any, ...]]) -> None:
        """Queue `(function, *args)` calls to run on the emitter thread, in this order."""
        if messages:
            self._queue.put(messages)

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            messages = self._queue.get()
            if messages is None:
                return
            with deferred_wakeups():  # one wake-up per event loop for this whole batch of events
                for function, *args in messages:
                    try:
                        function(*args)
                    except Exception:  # a failing consumer callback must not stop the other requests' streams
                        logger.exception("Emitting a generation event failed")


class Row:
    """One request being decoded: its sampling state on the decoding side, its text stream on the emitter."""

    def __init__(
        self, request: GenerationRequest, tokenizer: Any, vocab_size: int, max_total: int, outbox: list
    ) -> None:
        import torch

        params = request.params
        self.request = request
        self.generated = 0
        self._outbox = outbox  # messages for the emitter, posted once per step by the backend
        self._finished = False  # decided on the decoding side
        self._stop_ids = set(params.stop_token_ids)
        self._limit = min(params.max_new_tokens, max(max_total - len(request.prompt_ids), 1))
        self._generator = make_generator(params.seed)
        needs_counts = params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty
        self._counts = torch.zeros(vocab_size) if needs_counts else None
        self._text = _TextStream(request, IncrementalDetokenizer(tokenizer, params.skip_special_tokens))

    @property
    def done(self) -> bool:
        """True once the row finished here or its text hit a stop string on the emitter."""
        return self._finished or self._text.done

    @property
    def sampling_state(self) -> tuple[Any, Any, Any]:
        """(params, token counts or None, generator) for `sample_batch`."""
        return self.request.params, self._counts, self._generator

    def record(self, token: int) -> None:
        """Count a sampled token for the penalties."""
        if self._counts is not None:
            self._counts[token] += 1

    def accept(self, token: int) -> None:
        """Send the token to the text stream, or finish the row on a stop token, the length limit or a cancel."""
        if self.request.cancelled.is_set():
            self.finish("cancelled")
            return
        if token in self._stop_ids:
            self.finish("stop")
            return
        self.generated += 1
        self._outbox.append((self._text.push, token))
        if self.generated >= self._limit:
            self.finish("length")

    def finish(self, reason: str) -> None:
        """End the row: the emitter flushes held-back text and sends Finished, once."""
        if not self._finished:
            self._finished = True
            self._outbox.append((self._text.finish, reason, self.generated))

    def fail(self, error: BaseException) -> None:
        """Report an engine error for this row (after the text already queued)."""
        if not self._finished:
            self._finished = True
            self._outbox.append((self._text.fail, error))


class _TextStream:
    """Emitter side of a row: detokenise, cut at stop strings, emit TextDelta / Finished / Failed."""

    def __init__(self, request: GenerationRequest, detok: IncrementalDetokenizer) -> None:
        self.request, self._detok = request, detok
        self._stops = StopMatcher(request.params.stop)
        self._tokens = 0
        self.done = False

    def push(self, token: int) -> None:
        """Stream one token's text; a stop string ends the request here, a failure fails this request only."""
        if self.done:
            return
        self._tokens += 1
        try:
            text, stopped = self._stops.feed(self._detok.push(token))
            if text:
                self.request.emit(TextDelta(text, (token,)))
        except Exception as error:  # detokenising or the consumer's callback: this row fails, not the others
            logger.exception("Streaming a token failed for request %s", self.request.request_id)
            self.fail(error)
            return
        if stopped:
            self._end("stop", self._tokens)

    def finish(self, reason: str, tokens: int) -> None:
        """Emit held-back text (unless cancelled) and Finished."""
        if self.done:
            return
        if reason != "cancelled":
            tail, stopped = self._stops.feed(self._detok.flush())
            tail += "" if stopped else self._stops.flush()
            if tail:
                self.request.emit(TextDelta(tail))
        self._end(reason, tokens)

    def fail(self, error: BaseException) -> None:
        """Emit Failed, once."""
        if not self.done:
            self.done = True
            self.request.emit(Failed(error))

    def _end(self, reason: str, tokens: int) -> None:
        self.done = True
        self.request.emit(Finished(reason, len(self.request.prompt_ids), tokens))
