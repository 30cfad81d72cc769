"""POST /v1/chat/completions: streamed and whole answers, n choices, tool calls, reasoning content."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tuneforge.infer.chat_stream import ChatDelta, ChatResult
from tuneforge.infer.requests import Finished
from tuneforge.serve.convert import chat_inputs
from tuneforge.serve.deps import Authorized, EngineDep, SettingsDep
from tuneforge.serve.schemas import (
    GENERATION_RESPONSES,
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Usage,
    new_id,
    now,
    tool_call_id,
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

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[Authorized])


@router.post("/chat/completions", response_model=None, responses=GENERATION_RESPONSES)
async def create_chat_completion(
    request: ChatCompletionRequest, http: Request, engine: EngineDep, settings: SettingsDep
) -> ChatCompletionResponse | StreamingResponse:
    """OpenAI chat completions over the loaded model."""
    deadline = deadline_of(settings)
    work = asyncio.to_thread(chat_inputs, engine, request, settings)  # templating + tokenising: off the loop
    prompt, params = await unless_disconnected(http, work)
    streams = engine.open_streams(choice_prompts(prompt.ids, params, request.n), prompt.media, streamed=request.stream)
    assemblers = [engine.assembler(prompt) for _ in streams]
    name = request.model or settings.model_name
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        chunks = _stream_chunks(streams, assemblers, name, include_usage, deadline, http.app.state.metrics)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
    results = await unless_disconnected(http, _collect(streams, assemblers, deadline))
    return _response(results, name)


async def _collect(streams: list[Any], assemblers: list[Any], deadline: float | None) -> list[ChatResult]:
    results = [ChatResult() for _ in streams]
    async for index, event in merged(streams, deadline):
        for delta in assemblers[index].on_event(event):
            if delta.error is not None:
                raise delta.error
            results[index].add(delta)
    return results


def _message(result: ChatResult) -> AssistantMessage:
    calls = [{"id": tool_call_id(), **call} for call in result.tool_calls] or None
    return AssistantMessage(content=result.content, reasoning_content=result.reasoning or None, tool_calls=calls)


def _response(results: list[ChatResult], name: str) -> ChatCompletionResponse:
    prompt_tokens = results[0].prompt_tokens
    choices = [ChatChoice(index=i, message=_message(r), finish_reason=r.finish_reason) for i, r in enumerate(results)]
    completion_tokens = sum(r.completion_tokens for r in results)
    return ChatCompletionResponse(
        id=new_id("chatcmpl"),
        created=now(),
        model=name,
        choices=choices,
        usage=Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )


def _delta_payload(delta: ChatDelta, calls_sent: int) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if delta.reasoning:
        payload["reasoning_content"] = delta.reasoning
    if delta.content:
        payload["content"] = delta.content
    if delta.tool_calls:
        payload["tool_calls"] = [
            {"index": calls_sent + k, "id": tool_call_id(), **call} for k, call in enumerate(delta.tool_calls)
        ]
    return payload


async def _stream_chunks(
    streams: list[Any], assemblers: list[Any], name: str, include_usage: bool, deadline: float | None, metrics: Any
) -> AsyncIterator[str]:
    chunk_id, created = new_id("chatcmpl"), now()
    calls_sent = [0] * len(streams)
    usage = Usage()

    def chunk(index: int, delta: dict, finish: str | None = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [choice]})  # fmt: skip

    for index in range(len(streams)):
        yield chunk(index, {"role": "assistant", "content": ""})
    try:
        async for index, event in merged(streams, deadline):
            for delta in assemblers[index].on_event(event):
                if delta.error is not None:
                    raise delta.error
                payload = _delta_payload(delta, calls_sent[index])
                calls_sent[index] += len(delta.tool_calls)
                if payload:
                    yield chunk(index, payload)
                if delta.finish_reason is not None:
                    yield chunk(index, {}, delta.finish_reason)
            if isinstance(event, Finished):
                usage.prompt_tokens = event.prompt_tokens
                usage.completion_tokens += event.completion_tokens
    except Exception as error:  # the response has started: the error goes in the stream, then [DONE]
        yield sse_error(error, metrics)
        yield sse("[DONE]")
        return
    if include_usage:
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        yield sse({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": name,
                   "choices": [], "usage": usage.model_dump()})  # fmt: skip
    yield sse("[DONE]")
