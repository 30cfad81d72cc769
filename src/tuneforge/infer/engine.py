"""`Engine`: the one inference engine behind chat, the API, the web chat and evaluation.

It formats conversations with the training template (so prompts match training byte for byte), hands token ids
to a backend (the built-in batching Hugging Face backend, or vLLM / SGLang when installed) and turns the
streamed text into chat deltas (reasoning, content, tool calls). Synchronous and asyncio interfaces share it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.infer import media as mm
from tuneforge.infer.chat_stream import ChatAssembler, ChatDelta, ChatResult
from tuneforge.infer.delivery import LoopPost, loop_post
from tuneforge.infer.params import SamplingParams
from tuneforge.infer.requests import Event, Failed, Finished, GenerationRequest, RequestQueue
from tuneforge.infer.stats import EngineStats


class NotARewardModelError(TuneforgeError):
    """`score` was called but the loaded model has no value head."""


@dataclasses.dataclass
class Prompt:
    """An encoded chat prompt, whether it already opened a thinking block, and its media's model tensors."""

    ids: list[int]
    in_reasoning: bool
    tools: bool
    media: dict[str, Any] | None = None


class AsyncEventStream:
    """Async iterator over one queued request's events; `cancel` stops it (and frees its queue place at once)."""

    def __init__(self, request: GenerationRequest, sink: asyncio.Queue[Event], queue: RequestQueue) -> None:
        self.request, self._sink, self._queue = request, sink, queue

    def cancel(self) -> None:
        """Stop decoding this request; if it is still waiting, it leaves the queue now."""
        if not self.request.cancelled.is_set():
            self.request.cancel()
            self._queue.discard_cancelled()

    def push(self, item: Any) -> None:
        """Queue `item` behind the events already received (a caller's own marker, e.g. a deadline passing)."""
        self._sink.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while True:
                event = await self._sink.get()
                yield event
                if isinstance(event, (Finished, Failed)):
                    return
        finally:
            self.cancel()


class Engine:
    """Generation and scoring over a backend; build one with `load_engine(cfg)`."""

    def __init__(
        self,
        backend: Any,
        tokenizer: Any,
        template: Any,
        defaults: SamplingParams,
        model_name: str,
        scorer: Any = None,
        plugin: Any = None,
    ) -> None:
        self.backend, self.tokenizer, self.template = backend, tokenizer, template
        self.plugin = plugin  # the template's media plugin for a multimodal model, else None
        self.defaults = defaults
        self.model_name = model_name
        self.scorer = scorer
        self.stats = EngineStats()

    @property
    def context_len(self) -> int:
        """Longest prompt plus completion the model accepts, in tokens."""
        return self.backend.context_len

    @property
    def media_kinds(self) -> tuple[str, ...]:
        """The media kinds the model takes (`images`, `videos`, `audios`); empty for a text model."""
        return mm.media_kinds(self.plugin)

    # ---- prompts and settings ---------------------------------------------------------------------------

    def sampling(self, **overrides: Any) -> SamplingParams:
        """Default sampling settings with overrides; template stop words and eos ids are always included."""
        params = self.defaults.with_overrides(**overrides)
        stop_ids = [*params.stop_token_ids, *self.template.stop_token_ids(self.tokenizer), *_eos_ids(self)]
        stops = [*params.stop, *(w for w in self.template.stop_words if _multi_token(self.tokenizer, w))]
        return dataclasses.replace(params, stop=tuple(dict.fromkeys(stops)), stop_token_ids=tuple(set(stop_ids)))

    def encode_chat(
        self,
        messages: list[dict],
        system: str | None = None,
        tools: list[dict] | None = None,
        enable_thinking: bool | None = None,
        media: mm.Media | None = None,
    ) -> Prompt:
        """Token ids of the conversation plus the generation prompt, formatted as in training.

        `media` holds file paths per kind; their marks are expanded into media tokens as in training and the
        files become the model's tensors (`Prompt.media`), so the files may be deleted once this returns.
        """
        media = self._checked_media(media)
        messages = mm.media_messages(self.plugin, messages, media)
        template = self.template
        if enable_thinking is not None and template.spec.thinking is not None:
            template = dataclasses.replace(template, enable_thinking=enable_thinking)
        try:
            text = template.render(messages, system, tools or None, add_generation_prompt=True)
            ids = template.encode_prompt(self.tokenizer, messages, system, tools or None)  # the ids training built
        except (ValueError, KeyError, TypeError) as error:
            raise TuneforgeError(f"Cannot format the conversation with template {template.name!r}: {error}") from None
        thinking = template.spec.thinking
        opened = bool(thinking) and text.rstrip().endswith(thinking.open)
        return Prompt(ids, opened, bool(tools), mm.model_inputs(self.plugin, media))

    def check_length(self, prompt_len: int, max_new_tokens: int | None) -> None:
        """Raise TuneforgeError when the prompt (plus requested tokens) does not fit the context."""
        if prompt_len >= self.context_len:
            raise TuneforgeError(f"The prompt has {prompt_len} tokens; the model's context is {self.context_len}.")
        if max_new_tokens is not None and prompt_len + max_new_tokens > self.context_len:
            raise TuneforgeError(
                f"max_tokens={max_new_tokens} plus the prompt's {prompt_len} tokens exceeds the model's context "
                f"length {self.context_len}; lower max_tokens."
            )

    # ---- raw generation ---------------------------------------------------------------------------------

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, emit: Any, media: dict[str, Any] | None = None
    ) -> GenerationRequest:
        """Queue a request whose events go to `emit` (called from the engine thread); returns its handle.

        `media`: the model tensors of the prompt's media (`Prompt.media`, `media_inputs`)."""
        request = GenerationRequest(list(prompt_ids), params, self.stats.track(emit), media=media)
        self.backend.submit(request)
        return request

    def media_inputs(self, media: mm.Media) -> dict[str, Any] | None:
        """The model tensors for media files of a prompt already holding their media tokens (e.g. a dataset row)."""
        return mm.model_inputs(self.plugin, self._checked_media(media))

    def _checked_media(self, media: mm.Media | None) -> mm.Media:
        """The non-empty kinds of `media`, checked against the model and the backend."""
        if any((media or {}).values()) and not getattr(self.backend, "takes_media", False):
            raise TuneforgeError(
                "This inference backend takes text only; serve images, videos and audios with "
                "`infer_backend: huggingface`."
            )
        return mm.check_media(self.plugin, media or {})

    def events(
        self, prompt_ids: list[int], params: SamplingParams, media: dict[str, Any] | None = None
    ) -> Iterator[Event]:
        """Stream the events of one request; closing the iterator early cancels it."""
        sink: queue.Queue[Event] = queue.Queue()
        request = self.submit(prompt_ids, params, sink.put, media)
        try:
            while True:
                event = sink.get()
                yield event
                if isinstance(event, (Finished, Failed)):
                    return
        finally:
            request.cancel()

    def open_stream(
        self, prompt_ids: list[int], params: SamplingParams, media: dict[str, Any] | None = None
    ) -> AsyncEventStream:
        """Queue a request now (so QueueFullError is raised before any response starts); iterate it async."""
        return self.open_streams([(prompt_ids, params)], media)[0]

    def open_streams(
        self,
        prompts: list[tuple[list[int], SamplingParams]],
        media: dict[str, Any] | None = None,
        *,
        streamed: bool = True,
    ) -> list[AsyncEventStream]:
        """Queue every (prompt ids, params) pair at once, or none of them (QueueFullError / ShuttingDownError);
        `media`: the model tensors of the prompt's media, shared by every pair (one prompt, n choices).

        `streamed=False` (a caller that needs only the whole answer) wakes the event loop for each request's last
        event only: the text events wait in order behind it instead of waking the loop once per token, whose
        Python then competes with the decode step for the interpreter lock."""
        post = loop_post(asyncio.get_running_loop())  # one loop wake-up per burst of events
        streams, requests = [], []
        for ids, params in prompts:
            sink: asyncio.Queue[Event] = asyncio.Queue()
            emit = self.stats.track(functools.partial(_deliver, post, sink.put_nowait, streamed))
            request = GenerationRequest(list(ids), params, emit, media=media)
            requests.append(request)
            streams.append(AsyncEventStream(request, sink, self.backend.queue))
        try:
            self.backend.submit(*requests)
        except BaseException:
            for request in requests:  # never queued: close their accounting without events to anyone
                request.emit(Finished("cancelled", len(request.prompt_ids), 0))
            raise
        return streams

    # ---- chat -------------------------------------------------------------------------------------------

    def assembler(self, prompt: Prompt) -> ChatAssembler:
        """The delta assembler for one chat prompt."""
        return ChatAssembler(self.template, tools=prompt.tools, in_reasoning=prompt.in_reasoning)

    def stream_chat(
        self,
        messages: list[dict],
        system: str | None = None,
        tools: list[dict] | None = None,
        *,
        media: mm.Media | None = None,
        **overrides: Any,
    ) -> Iterator[ChatDelta]:
        """Stream an answer as deltas; the last one carries finish_reason and token counts.

        `media`: file paths per kind (`{"images": [...], "videos": [...], "audios": [...]}`); messages without
        `<image>`/`<video>`/`<audio>` marks get them at the start of the first user message (as LLaMA-Factory).
        """
        enable_thinking = overrides.pop("enable_thinking", None)
        prompt = self.encode_chat(messages, system, tools, enable_thinking, media)
        params = self.sampling(**overrides)
        self.check_length(len(prompt.ids), None)
        assembler = self.assembler(prompt)
        for event in self.events(prompt.ids, params, prompt.media):
            for delta in assembler.on_event(event):
                if delta.error is not None:
                    raise delta.error
                yield delta

    def chat(
        self,
        messages: list[dict],
        system: str | None = None,
        tools: list[dict] | None = None,
        *,
        media: mm.Media | None = None,
        **overrides: Any,
    ) -> ChatResult:
        """The whole answer at once (same text as joining `stream_chat`); `media` as there."""
        result = ChatResult()
        for delta in self.stream_chat(messages, system, tools, media=media, **overrides):
            result.add(delta)
        return result

    def generate(self, prompt: str, **overrides: Any) -> tuple[str, str]:
        """Plain completion of `prompt` (no template): (text, finish_reason)."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        pieces, reason = [], "stop"
        for event in self.events(ids, self.sampling(**overrides)):
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Finished):
                reason = event.reason
            else:
                pieces.append(event.text)
        return "".join(pieces), reason

    # ---- scoring and lifecycle --------------------------------------------------------------------------

    def score(self, texts: list[str], max_length: int | None = None) -> list[float]:
        """Reward-model scores of whole texts (value head on the last token); needs a value head."""
        if self.scorer is None:
            raise NotARewardModelError(
                "The loaded model is not a reward model: no value_head.safetensors beside the model or adapter."
            )
        return self.scorer(texts, max_length)

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting requests and finish the running ones."""
        self.backend.close(timeout)


def _deliver(post: LoopPost, put: Any, streamed: bool, event: Event) -> None:
    """Hand `event` to the loop; unless `streamed`, wake it only for the request's last event."""
    post.post(put, event, wake=streamed or isinstance(event, (Finished, Failed)))


def _eos_ids(engine: Engine) -> list[int]:
    config = getattr(getattr(engine.backend, "model", None), "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _multi_token(tokenizer: Any, word: str) -> bool:
    return len(tokenizer.encode(word, add_special_tokens=False)) != 1
