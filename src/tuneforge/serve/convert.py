"""Turn API requests into engine inputs: template messages, system prompt, tools, sampling settings."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.serve.deps import ServerSettings
from tuneforge.serve.errors import APIError
from tuneforge.serve.media import PART_KINDS, MediaParts
from tuneforge.serve.schemas import ChatCompletionRequest, ChatMessage, SamplingFields

JSON_HINT = "Respond with a single valid JSON object and nothing else."


def _text(message: ChatMessage, index: int, media: MediaParts | None) -> str:
    """The message's text; each media part becomes its mark where it stands (its file collected by `media`)."""
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for number, part in enumerate(content):
        where = f"messages.{index}.content.{number}"
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type in PART_KINDS and media is not None:
            texts.append(media.mark(part, where))
        else:
            known = "text" if media is None else f"text, {', '.join(PART_KINDS)}"
            raise APIError(400, f"{where}: unsupported content part {part.type!r}; parts may be {known}", where)
    return "".join(texts)


def _tool_calls(message: ChatMessage) -> list[dict]:
    calls = []
    for call in message.tool_calls or []:
        arguments = call.function.arguments
        if isinstance(arguments, str):
            with contextlib.suppress(json.JSONDecodeError):  # else the template renders the raw string
                arguments = json.loads(arguments)
        calls.append({"type": "function", "function": {"name": call.function.name, "arguments": arguments}})
    return calls


def template_messages(messages: list[ChatMessage], media: MediaParts | None = None) -> tuple[str | None, list[dict]]:
    """(system prompt or None, canonical messages with roles user / assistant / tool); `media` collects the files
    of media content parts (without it, only text parts are taken)."""
    systems, out = [], []
    for index, message in enumerate(messages):
        text = _text(message, index, None if message.role in ("system", "developer") else media)
        if message.role in ("system", "developer"):
            systems.append(text)
        elif message.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": text}
            if message.tool_calls:
                item["tool_calls"] = _tool_calls(message)
            out.append(item)
        else:
            out.append({"role": message.role, "content": text})
    if not out or out[-1]["role"] == "assistant":
        raise APIError(400, "messages: the last message must be from the user or a tool", "messages")
    return ("\n\n".join(systems) if systems else None), out


def sampling_overrides(request: SamplingFields, max_tokens: int | None) -> dict[str, Any]:
    """Engine sampling overrides from the OpenAI fields (unset fields keep the config defaults)."""
    stop = request.stop_list()
    return {
        "max_new_tokens": max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "repetition_penalty": request.repetition_penalty,
        "seed": request.seed,
        "stop": stop or None,
    }


def chat_inputs(engine: Any, request: ChatCompletionRequest, settings: ServerSettings) -> tuple[Any, Any]:
    """(encoded prompt, sampling params) for a chat request; APIError 400 for anything the engine rejects."""
    if len(request.messages) > settings.max_messages:
        raise APIError(400, f"messages: at most {settings.max_messages} messages per request", "messages")
    with MediaParts(settings) as media:  # the files live until the engine has made tensors of them
        return _chat_inputs(engine, request, settings, media)


def _chat_inputs(engine: Any, request: ChatCompletionRequest, settings: ServerSettings, media: MediaParts) -> Any:
    system, messages = template_messages(request.messages, media)
    if request.response_format is not None and request.response_format.type != "text":
        system = f"{system}\n\n{JSON_HINT}" if system else JSON_HINT
    use_tools = request.tools and request.tool_choice != "none"
    tools = [t.model_dump(exclude_none=True) for t in request.tools] if use_tools else None
    thinking = request.enable_thinking
    if thinking is None and request.chat_template_kwargs:
        thinking = request.chat_template_kwargs.get("enable_thinking")
    max_tokens = request.max_completion_tokens or request.max_tokens
    try:
        prompt = engine.encode_chat(messages, system, tools, enable_thinking=thinking, media=media.media)
    except TuneforgeError as error:
        raise APIError(400, str(error), "messages") from None
    return prompt, checked_params(engine, len(prompt.ids), max_tokens, request, "messages")


def checked_params(engine: Any, prompt_len: int, max_tokens: int | None, request: SamplingFields, field: str) -> Any:
    """Sampling params once the prompt (`field`) and max_tokens fit the context; APIError 400 naming the culprit."""
    for limit, param in ((None, field), (max_tokens, "max_tokens")):
        try:
            engine.check_length(prompt_len, limit)
        except TuneforgeError as error:
            raise APIError(400, str(error), param) from None
    try:
        return engine.sampling(**sampling_overrides(request, max_tokens))
    except TuneforgeError as error:
        raise APIError(400, str(error)) from None


def completion_inputs(
    engine: Any, prompt: str, request: SamplingFields, field: str = "prompt"
) -> tuple[list[int], Any]:
    """(prompt ids, sampling params) for a text completion; errors name `field` (`prompt.3` in a list)."""
    ids = engine.tokenizer.encode(prompt, add_special_tokens=False)
    if not ids:
        raise APIError(400, f"{field}: must not be empty", field)
    return ids, checked_params(engine, len(ids), request.max_tokens, request, field)
