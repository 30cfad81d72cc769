"""Running `n` choices at once on the engine, deadlines, client disconnects and Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import Request

from tuneforge.infer.requests import Event, RequestTimeoutError
from tuneforge.serve.errors import APIError, error_type, failure_status

T = TypeVar("T")
TIMED_OUT = (
    "The request ran past the server's request_timeout and was cancelled; ask for fewer tokens (max_tokens) or "
    "retry when the server is less busy."
)
_EXPIRED: Any = object()  # put in a stream's event queue when its deadline passes


def choice_prompts(prompt_ids: list[int], params: Any, n: int) -> list[tuple[list[int], Any]]:
    """`n` (ids, params) pairs for one prompt; a given seed becomes seed + i so the choices differ."""
    return [
        (prompt_ids, params if params.seed is None else dataclasses.replace(params, seed=params.seed + index))
        for index in range(n)
    ]


def deadline_of(settings: Any) -> float | None:
    """The loop time by which a request arriving now must be done (`request_timeout`), or None."""
    timeout = settings.request_timeout
    return None if timeout is None else asyncio.get_running_loop().time() + timeout


async def merged(streams: list[Any], deadline: float | None = None) -> AsyncIterator[tuple[int, Event]]:
    """(choice index, event) pairs from all streams as they arrive; cancels every stream on exit.

    Raises RequestTimeoutError once the loop time passes `deadline`.
    """
    if len(streams) == 1:  # the usual request (n = 1): no task, queue hop or timer per event
        async for item in _single(streams[0], deadline):
            yield item
        return
    queue: asyncio.Queue[tuple[int, Event] | None] = asyncio.Queue()

    async def pump(index: int, stream: Any) -> None:
        async for event in stream:
            await queue.put((index, event))
        await queue.put(None)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(tasks)
    loop = asyncio.get_running_loop()
    try:
        while remaining:
            left = None if deadline is None else deadline - loop.time()
            try:
                item = await asyncio.wait_for(queue.get(), left)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                raise RequestTimeoutError(TIMED_OUT) from None
            if item is None:
                remaining -= 1
                continue
            yield item
    finally:
        for stream in streams:
            stream.cancel()
        for task in tasks:
            task.cancel()


async def _single(stream: Any, deadline: float | None) -> AsyncIterator[tuple[int, Event]]:
    """`merged` for one stream: one timer for the whole request puts `_EXPIRED` in its event queue at `deadline`
    (a timed wait per event cost the event loop a task and a timer per token)."""
    timer = None if deadline is None else asyncio.get_running_loop().call_at(deadline, stream.push, _EXPIRED)
    try:
        async for event in stream:
            if event is _EXPIRED:
                raise RequestTimeoutError(TIMED_OUT)
            yield 0, event
    finally:
        if timer is not None:
            timer.cancel()
        stream.cancel()


async def unless_disconnected(http: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its engine requests) as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(http))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise APIError(499, "The client closed the connection; the request was cancelled.")
    finally:
        for pending in (task, watcher):
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def _disconnected(http: Request) -> None:
    while (await http.receive())["type"] != "http.disconnect":
        pass


def sse(payload: dict | str) -> str:
    """One Server-Sent Event line pair."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def sse_error(error: BaseException, metrics: Any) -> str:
    """The error event a stream ends with: a 4xx-type error for the request's own fault, else server_error."""
    status = failure_status(error)
    kind = error_type(status)
    metrics.error(kind)
    message = str(error) if status < 500 else f"generation failed: {error}"
    return sse({"error": {"message": message, "type": kind, "param": None, "code": str(status)}})


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
