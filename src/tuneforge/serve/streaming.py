"""Running `n` choices at once on the engine and writing Server-Sent Events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from tuneforge.infer.requests import Event


def open_streams(engine: Any, prompt_ids: list[int], params: Any, n: int) -> list[Any]:
    """Queue `n` requests now (seed, if given, becomes seed + i so choices differ); all or none are queued."""
    streams = []
    try:
        for index in range(n):
            seeded = params if params.seed is None else dataclasses.replace(params, seed=params.seed + index)
            streams.append(engine.open_stream(prompt_ids, seeded))
    except Exception:
        for stream in streams:
            stream.cancel()
        raise
    return streams


async def merged(streams: list[Any]) -> AsyncIterator[tuple[int, Event]]:
    """(choice index, event) pairs from all streams as they arrive; cancels every stream on exit."""
    queue: asyncio.Queue[tuple[int, Event] | None] = asyncio.Queue()

    async def pump(index: int, stream: Any) -> None:
        async for event in stream:
            await queue.put((index, event))
        await queue.put(None)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(tasks)
    try:
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
                continue
            yield item
    finally:
        for stream in streams:
            stream.cancel()
        for task in tasks:
            task.cancel()


def sse(payload: dict | str) -> str:
    """One Server-Sent Event line pair."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
