"""Drive an asyncio generation engine (vLLM, SGLang) from tuneforge's thread-based `Engine`.

`AsyncLoopBackend` owns one event loop in a background thread. The engine client is built on that loop (both
vLLM's `AsyncLLM` and SGLang's `Engine` bind to the loop they are created on); each submitted request becomes a
task that iterates the client's stream and pushes tuneforge events (`TextDelta`, `Finished`, `Failed`) to the
request's `emit`. A watcher task turns `GenerationRequest.cancel()` into an abort of the engine request.

Stop strings are passed to the engine (so it stops decoding) and also applied to the streamed text with
tuneforge's own `StopMatcher`, so every backend streams exactly what the Hugging Face backend would: never the
stop string itself, never a partial stop string that later turns out to be one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tuneforge.errors import ConfigError
from tuneforge.infer.detok import StopMatcher
from tuneforge.infer.requests import Failed, Finished, GenerationRequest, RequestQueue, TextDelta

logger = logging.getLogger(__name__)

_REASONS = {"stop": "stop", "length": "length", "abort": "cancelled"}
_WATCH_SECONDS = 0.02


@dataclass(frozen=True)
class Chunk:
    """What one engine output adds to a request: new text, new token ids, and the finish reason once done."""

    text: str
    token_ids: tuple[int, ...] = ()
    finish_reason: str | None = None


class AsyncClient(Protocol):
    """The per-engine part: start a stream, abort it, shut the engine down."""

    context_len: int

    def stream(self, request: GenerationRequest, request_id: str, max_tokens: int) -> AsyncIterator[Chunk]:
        """Generate for `request`, yielding what each engine output adds."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop the engine request `request_id` (no-op when already finished)."""
        ...

    def shutdown(self) -> None:
        """Release the engine (GPU memory, worker processes)."""
        ...


def require_package(package: str, backend: str, install: str) -> Any:
    """Import `package`, or raise ConfigError naming `infer_backend` and the install command."""
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise ConfigError(
            f"`infer_backend: {backend}` needs the `{package}` package and a CUDA GPU ({install}); "
            f"importing it failed ({error}). Or set `infer_backend: huggingface`, which works everywhere."
        ) from None


def require_cuda(backend: str) -> None:
    """Raise ConfigError unless torch sees a CUDA GPU."""
    if not cuda_available():
        raise ConfigError(
            f"`infer_backend: {backend}` needs a CUDA GPU and torch sees none (torch.cuda.is_available() is "
            "False); run on a GPU machine or set `infer_backend: huggingface`."
        )


def cuda_available() -> bool:
    """True when torch reports a usable CUDA device."""
    import torch

    return torch.cuda.is_available()


def gpu_count() -> int:
    """Visible CUDA devices (at least 1): the default tensor-parallel degree."""
    import torch

    return max(1, torch.cuda.device_count())


def max_tokens_for(request: GenerationRequest, context_len: int) -> int:
    """`max_new_tokens`, lowered so prompt plus completion fit the engine's context (at least 1)."""
    room = context_len - len(request.prompt_ids)
    return max(1, min(request.params.max_new_tokens, room))


class _Relay:
    """Turns one request's engine chunks into tuneforge events, applying the stop strings."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.completion_tokens = 0
        self.reason: str | None = None
        self.done = False
        self._stops = StopMatcher(request.params.stop)

    def push(self, chunk: Chunk) -> None:
        """Emit the chunk's safe text; note the finish reason (or `stop` when a stop string appeared)."""
        self.completion_tokens += len(chunk.token_ids)
        text, stopped = self._stops.feed(chunk.text)
        if text:
            self.request.emit(TextDelta(text, chunk.token_ids))
        if stopped:
            self.finish("stop", flush=False)
        elif chunk.finish_reason is not None:
            self.reason = _REASONS.get(chunk.finish_reason, chunk.finish_reason)

    def finish(self, reason: str, flush: bool = True) -> None:
        """Emit held-back text (unless cancelled or cut by a stop string) and `Finished`, once."""
        if self.done:
            return
        self.done = True
        if flush and reason != "cancelled":
            tail = self._stops.flush()
            if tail:
                self.request.emit(TextDelta(tail))
        self.request.emit(Finished(reason, len(self.request.prompt_ids), self.completion_tokens))

    def fail(self, error: BaseException) -> None:
        """Report an engine error, once."""
        if not self.done:
            self.done = True
            self.request.emit(Failed(error))


class AsyncLoopBackend:
    """Thread-safe `submit` / `close` over an asyncio engine client running on its own loop thread."""

    def __init__(
        self, make_client: Callable[[], AsyncClient], *, name: str, max_queue_size: int, max_running: int = 256
    ) -> None:
        self.name = name
        self.queue = RequestQueue(max_queue_size)
        self.max_running = max(1, max_running)
        self._running: dict[int, tuple[GenerationRequest, asyncio.Task]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tuneforge-{name}", daemon=True)
        self._thread.start()
        try:
            self.client = self._on_loop(make_client)
        except BaseException:
            self._stop_loop(5.0)
            raise
        self.context_len = int(self.client.context_len)
        self._watcher = asyncio.run_coroutine_threadsafe(self._watch_cancellations(), self._loop)

    # ---- public -----------------------------------------------------------------------------------------

    def submit(self, *requests: GenerationRequest) -> None:
        """Queue the requests, all or none (QueueFullError / ShuttingDownError); they start on the loop at once."""
        self.queue.put(*requests)
        self._loop.call_soon_threadsafe(self._admit)

    def pending(self) -> int:
        """Requests waiting to be handed to the engine."""
        return len(self.queue)

    def running(self) -> int:
        """Requests the engine is generating now."""
        return len(self._running)

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new requests, let running ones finish (up to `timeout` s), shut the engine and loop down."""
        self.queue.close()
        if not self._loop.is_running():
            return
        drain = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
        with contextlib.suppress(Exception):
            drain.result(timeout)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._cancel_all(), self._loop).result(5.0)
        self._watcher.cancel()
        try:
            self._on_loop(self.client.shutdown)
        except Exception:  # shutting down must not raise over the caller's own cleanup
            logger.exception("Shutting down the %s engine failed", self.name)
        self._stop_loop(timeout)

    # ---- loop side --------------------------------------------------------------------------------------

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()

    def _stop_loop(self, timeout: float | None) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def _admit(self) -> None:
        room = self.max_running - len(self._running)
        for request in self.queue.take(room, None) if room > 0 else []:
            task = self._loop.create_task(self._serve(request))
            self._running[request.request_id] = (request, task)
            task.add_done_callback(lambda _, key=request.request_id: self._finished(key))

    def _finished(self, key: int) -> None:
        self._running.pop(key, None)
        self._admit()

    async def _serve(self, request: GenerationRequest) -> None:
        relay = _Relay(request)
        if request.cancelled.is_set():
            relay.finish("cancelled")
            return
        request_id = f"tuneforge-{request.request_id}"
        stream = self.client.stream(request, request_id, max_tokens_for(request, self.context_len))
        try:
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    relay.push(chunk)
                    if relay.done or request.cancelled.is_set():
                        break
        except asyncio.CancelledError:
            await self._abort(request_id)
            relay.finish("cancelled")
            return
        except Exception as error:  # an engine failure is this request's failure, not the loop's
            logger.exception("%s generation failed", self.name)
            relay.fail(error)
            return
        if request.cancelled.is_set() and not relay.done:
            await self._abort(request_id)
            relay.finish("cancelled")
        elif relay.done:  # stopped early by a stop string the engine had not cut yet
            await self._abort(request_id)
        else:
            relay.finish(relay.reason or "stop")

    async def _abort(self, request_id: str) -> None:
        try:
            await self.client.abort(request_id)
        except Exception:
            logger.exception("Aborting %s request %s failed", self.name, request_id)

    async def _watch_cancellations(self) -> None:
        while True:
            for request, task in list(self._running.values()):
                if request.cancelled.is_set() and not task.done():
                    task.cancel()
            await asyncio.sleep(_WATCH_SECONDS)

    async def _drain(self) -> None:
        while self._running or len(self.queue):
            await asyncio.sleep(_WATCH_SECONDS)

    async def _cancel_all(self) -> None:
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for request in self.queue.take(len(self.queue), None):
            request.emit(Finished("cancelled", len(request.prompt_ids), 0))


def merged_extra(value: dict | str | None, key: str) -> dict[str, Any]:
    """`vllm_config` / `sglang_config` as a dict (they may be given as a JSON string)."""
    from tuneforge.files import json_object

    if value is None or value == "":
        return {}
    return json_object(value, f"`{key}`", "a mapping of engine arguments")
