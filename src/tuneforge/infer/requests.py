"""Generation requests, the events streamed back for them, and the bounded queue in front of the engine."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.infer.params import SamplingParams

_ids = itertools.count(1)


class QueueFullError(TuneforgeError):
    """The engine's waiting queue is full; retry later (the API answers 429)."""


class ShuttingDownError(TuneforgeError):
    """The engine is stopping and accepts no new requests (the API answers 503)."""


class SamplingError(TuneforgeError):
    """Decoding one request failed because of its own sampling settings (the API answers 400)."""


class RequestTimeoutError(TuneforgeError):
    """A request ran past the server's `request_timeout` (the API answers 408)."""


@dataclass(frozen=True)
class TextDelta:
    """Newly generated text for one request (never ends inside a character, never contains a stop string)."""

    text: str
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Finished:
    """The request is complete. `reason` is stop, length or cancelled (OpenAI finish_reason values)."""

    reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    """The engine failed while decoding this request."""

    error: BaseException


Event = TextDelta | Finished | Failed


@dataclass
class GenerationRequest:
    """One prompt to decode; `emit` receives the events (called from the engine's thread); `media` holds the model
    tensors of the prompt's images, videos or audios (None for text)."""

    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[Event], None]
    request_id: int = field(default_factory=lambda: next(_ids))
    cancelled: threading.Event = field(default_factory=threading.Event)
    media: dict[str, Any] | None = None

    def cancel(self) -> None:
        """Ask the engine to stop this request at the next step (it then emits Finished('cancelled'))."""
        self.cancelled.set()


class RequestQueue:
    """A bounded FIFO shared by the submitting threads and the engine's worker thread."""

    def __init__(self, max_size: int) -> None:
        self._items: deque[GenerationRequest] = deque()
        self._max = max_size
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def put(self, *requests: GenerationRequest) -> None:
        """Enqueue all of `requests` or none (QueueFullError / ShuttingDownError); cancelled ones leave first."""
        with self._cond:
            dropped = self._drop_cancelled()
            if self._closed:
                raise ShuttingDownError("The inference engine is shutting down; no new requests are accepted.")
            if len(requests) > self._max:
                raise TuneforgeError(
                    f"This request needs {len(requests)} generations at once; the queue holds at most {self._max} "
                    "(max_queue_size). Send fewer prompts or a smaller n."
                )
            if len(self._items) + len(requests) > self._max:
                raise QueueFullError(
                    f"{len(self._items)} requests are already waiting (at most {self._max}); "
                    f"this one needs room for {len(requests)}. Retry shortly."
                )
            self._items.extend(requests)
            self._cond.notify()
        _finish_cancelled(dropped)

    def take(self, limit: int, wait: float | None) -> list[GenerationRequest]:
        """Up to `limit` live requests; waits up to `wait` seconds for the first one when `wait` is not None.

        Requests cancelled while waiting are finished (`Finished('cancelled')`) here rather than handed out.
        """
        with self._cond:
            if wait is not None and not self._items and not self._closed:
                self._cond.wait(timeout=wait)
            dropped = self._drop_cancelled()
            out = []
            while self._items and len(out) < limit:
                out.append(self._items.popleft())
        _finish_cancelled(dropped)
        return out

    def discard_cancelled(self) -> None:
        """Finish and drop every waiting request that was cancelled (frees its place at once)."""
        with self._cond:
            dropped = self._drop_cancelled()
        _finish_cancelled(dropped)

    def _drop_cancelled(self) -> list[GenerationRequest]:
        dropped = [r for r in self._items if r.cancelled.is_set()]
        if dropped:
            self._items = deque(r for r in self._items if not r.cancelled.is_set())
        return dropped

    def close(self) -> None:
        """Refuse new requests; the ones already queued are still served."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _finish_cancelled(requests: list[GenerationRequest]) -> None:
    for request in requests:
        request.emit(Finished("cancelled", len(request.prompt_ids), 0))
