"""POST /v1/completions: plain text continuation of a prompt (no chat template)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from tuneforge.infer.requests import Failed, Finished, TextDelta
from tuneforge.serve.convert import completion_inputs
from tuneforge.serve.deps import Authorized, EngineDep, SettingsDep
from tuneforge.serve.schemas import CompletionChoice, CompletionRequest, CompletionResponse, Usage, new_id, now
from tuneforge.serve.streaming import SSE_HEADERS, merged, open_streams, sse

router = APIRouter(prefix="/v1", tags=["completions"], dependencies=[Authorized])


@router.post("/completions", response_model=None)
async def create_completion(
    request: CompletionRequest, engine: EngineDep, settings: SettingsDep
) -> CompletionResponse | StreamingResponse:
    """OpenAI text completions; a list of prompts gives n choices per prompt, in order."""
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    streams = []
    for text in prompts:
        ids, params = completion_inputs(engine, text, request)
        streams += open_streams(engine, ids, params, request.n)
    name = request.model or settings.model_name
    if request.stream:
        return StreamingResponse(_chunks(streams, name), media_type="text/event-stream", headers=SSE_HEADERS)
    texts, reasons, usage = [""] * len(streams), ["stop"] * len(streams), Usage()
    async for index, event in merged(streams):
        if isinstance(event, Failed):
            raise RuntimeError(f"generation failed: {event.error}") from event.error
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


async def _chunks(streams: list[Any], name: str) -> AsyncIterator[str]:
    chunk_id, created = new_id("cmpl"), now()

    def chunk(index: int, text: str, finish: str | None) -> str:
        choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        return sse({"id": chunk_id, "object": "text_completion", "created": created, "model": name,
                    "choices": [choice]})  # fmt: skip

    async for index, event in merged(streams):
        if isinstance(event, Failed):
            yield sse({"error": {"message": f"generation failed: {event.error}", "type": "server_error"}})
            break
        if isinstance(event, TextDelta) and event.text:
            yield chunk(index, event.text, None)
        elif isinstance(event, Finished):
            yield chunk(index, "", event.reason)
    yield sse("[DONE]")
