"""POST /v1/completions: plain text continuation of a prompt (no chat template)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tuneforge.infer.requests import Failed, Finished, TextDelta
from tuneforge.serve.convert import completion_inputs
from tuneforge.serve.deps import Authorized, EngineDep, SettingsDep
from tuneforge.serve.schemas import (
    GENERATION_RESPONSES,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    Usage,
    new_id,
    now,
)
from tuneforge.serve.streaming import (
    SSE_HEADERS,
    choice_prompts,
    deadline_of,
    merged,
    sse,
    sse_error,
    unless_disconnected,
)

router = APIRouter(prefix="/v1", tags=["completions"], dependencies=[Authorized])


@router.post("/completions", response_model=None, responses=GENERATION_RESPONSES)
async def create_completion(
    request: CompletionRequest, http: Request, engine: EngineDep, settings: SettingsDep
) -> CompletionResponse | StreamingResponse:
    """OpenAI text completions; a list of prompts gives n choices per prompt, in order.

    Every prompt is checked before any is queued, and all choices are queued together or not at all (429).
    """
    deadline = deadline_of(settings)
    if isinstance(request.prompt, str):
        named = [(request.prompt, "prompt")]
    else:
        named = [(text, f"prompt.{index}") for index, text in enumerate(request.prompt)]
    work = asyncio.to_thread(lambda: [completion_inputs(engine, text, request, field) for text, field in named])
    encoded = await unless_disconnected(http, work)
    pairs = [pair for ids, params in encoded for pair in choice_prompts(ids, params, request.n)]
    streams = engine.open_streams(pairs, streamed=request.stream)
    name = request.model or settings.model_name
    if request.stream:
        chunks = _chunks(streams, name, deadline, http.app.state.metrics)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
    return await unless_disconnected(http, _collect(streams, name, deadline))


async def _collect(streams: list[Any], name: str, deadline: float | None) -> CompletionResponse:
    texts, reasons, usage = [""] * len(streams), ["stop"] * len(streams), Usage()
    async for index, event in merged(streams, deadline):
        if isinstance(event, Failed):
            raise event.error
        if isinstance(event, TextDelta):
            texts[index] += event.text
        elif isinstance(event, Finished):
            reasons[index] = event.reason
            _count(usage, event)
    choices = [CompletionChoice(index=i, text=texts[i], finish_reason=reasons[i]) for i in range(len(texts))]
    return CompletionResponse(id=new_id("cmpl"), created=now(), model=name, choices=choices, usage=usage)


def _count(usage: Usage, event: Finished) -> None:
    usage.prompt_tokens += event.prompt_tokens
    usage.completion_tokens += event.completion_tokens
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens


async def _chunks(streams: list[Any], name: str, deadline: float | None, metrics: Any) -> AsyncIterator[str]:
    chunk_id, created = new_id("cmpl"), now()

    def chunk(index: int, text: str, finish: str | None) -> str:
        choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        return sse({"id": chunk_id, "object": "text_completion", "created": created, "model": name,
                    "choices": [choice]})  # fmt: skip

    try:
        async for index, event in merged(streams, deadline):
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, TextDelta) and event.text:
                yield chunk(index, event.text, None)
            elif isinstance(event, Finished):
                yield chunk(index, "", event.reason)
    except Exception as error:  # the response has started: the error goes in the stream, then [DONE]
        yield sse_error(error, metrics)
    yield sse("[DONE]")
