"""Pydantic request and response models of the OpenAI-compatible API (the subset tuneforge serves)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneforge.infer.params import MAX_SEED, REPETITION_PENALTY_RANGE
from tuneforge.serve.validation import check_json_schema, check_unicode, invalid

MAX_STOP = 16
MAX_N = 16


def new_id(prefix: str) -> str:
    """An OpenAI-style object id such as `chatcmpl-1f3a...`."""
    return f"{prefix}-{uuid.uuid4().hex}"


def tool_call_id() -> str:
    """A tool-call id in the `call_...` form OpenAI clients expect."""
    return f"call_{uuid.uuid4().hex[:24]}"


def now() -> int:
    """Unix time in seconds for `created` fields."""
    return int(time.time())


class _Strict(BaseModel):
    """Types as the OpenAI API has them: `"max_tokens": "10"` or `"stream": 1` is a 400, not coerced."""

    model_config = ConfigDict(strict=True)


class _Request(_Strict):
    """Unknown OpenAI fields (user, logit_bias, ...) are accepted and ignored, like OpenAI's own SDK expects.

    Every string anywhere in the body (values and keys) must be valid Unicode: a lone surrogate is a 400 naming
    the field, before any work.
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        check_unicode(data)
        return data


class FunctionCall(_Strict):
    name: str = Field(min_length=1, max_length=256)
    arguments: str | dict[str, Any] = "{}"


class ToolCall(_Strict):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class MediaURL(_Strict):
    model_config = ConfigDict(extra="allow", strict=True)
    url: str = Field(min_length=1)


class InputAudio(_Strict):
    data: str = Field(min_length=1)
    format: str = Field("wav", max_length=16)


class ContentPart(_Strict):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None
    image_url: MediaURL | None = None
    video_url: MediaURL | None = None
    audio_url: MediaURL | None = None
    input_audio: InputAudio | None = None


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=64)
    tool_call_id: str | None = None


class FunctionSpec(_Strict):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None

    @field_validator("parameters")
    @classmethod
    def _json_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_json_schema(value)


class ToolSpec(_Strict):
    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedFunction(_Strict):
    name: str = Field(min_length=1, max_length=256)


class NamedToolChoice(_Strict):
    type: Literal["function"] = "function"
    function: NamedFunction


class ResponseFormat(_Strict):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text", "json_object", "json_schema"] = "text"


class StreamOptions(_Strict):
    include_usage: bool = False


class SamplingFields(_Request):
    """Sampling fields shared by chat and text completions; unset fields use the config's `generation`."""

    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=2**31 - 1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, ge=REPETITION_PENALTY_RANGE[0], le=REPETITION_PENALTY_RANGE[1])
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=MAX_STOP)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_list(self) -> list[str]:
        """`stop` as a list (OpenAI accepts a string or a list)."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(SamplingFields):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolSpec] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    enable_thinking: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _known_tool_choice(self) -> ChatCompletionRequest:
        names = [tool.function.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise invalid("tools", "two tools have the same function name")
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            known = ", ".join(names) or "none"
            raise invalid("tool_choice", f"function {self.tool_choice.function.name!r} is not in tools ({known})")
        if self.tool_choice == "required" and not names:
            raise invalid("tool_choice", "'required' needs at least one tool in tools")
        return self


class CompletionRequest(SamplingFields):
    model: str | None = None
    prompt: str | list[str] = Field(min_length=1)
    max_tokens: int | None = Field(16, ge=1)


class ScoreRequest(_Request):
    model: str | None = None
    messages: list[str] = Field(min_length=1)
    max_length: int | None = Field(None, ge=1)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "tuneforge"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ScoreResponse(BaseModel):
    id: str
    object: Literal["score.evaluation"] = "score.evaluation"
    model: str
    scores: list[float]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS = {
    400: "Invalid request (the `error.param` names the field).",
    401: "Missing or wrong API key.",
    408: "The request ran past the server's request_timeout.",
    413: "The request body is too large.",
    429: "The queue is full or the key's rate limit is reached; retry after `Retry-After` seconds.",
    503: "The server is shutting down.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses (all share the OpenAI error body)."""
    return {status: {"model": ErrorResponse, "description": _ERRORS[status]} for status in statuses}


AUTH_RESPONSES = error_responses(401, 429)
GENERATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The whole answer, or Server-Sent Events when `stream` is true.",
        "content": {
            "text/event-stream": {
                "schema": {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}
            }
        },
    },
    **error_responses(400, 408, 413, 503),
}
