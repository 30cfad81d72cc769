"""Turn a stream of generated text into chat deltas: reasoning, content and tool calls.

`ChatAssembler` is push-based (one engine event in, a list of `ChatDelta` out) so the synchronous chat, the async
API and the web UI share it. Reasoning is the text inside the template's thinking markers (`<think>…</think>`);
tool calls start at the template's tool-call marker (e.g. `<tool_call>`), are buffered to the end and parsed with
the template's own tool format, so streamed and non-streamed answers agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneforge.infer.requests import Event, Failed, Finished, TextDelta


@dataclass
class ChatDelta:
    """A piece of an assistant answer. The last delta of a stream carries `finish_reason` and token counts."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: BaseException | None = None


@dataclass
class ChatResult:
    """A whole assistant answer (the deltas of one stream joined)."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, delta: ChatDelta) -> None:
        """Fold one delta into the result."""
        self.content += delta.content
        self.reasoning += delta.reasoning
        self.tool_calls.extend(delta.tool_calls)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
            self.prompt_tokens, self.completion_tokens = delta.prompt_tokens, delta.completion_tokens


class MarkerSplitter:
    """Finds the first occurrence of `marker` in streamed text, holding back a possible partial marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self._held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """Returns (text before the marker, text after it or None when the marker has not appeared yet)."""
        buffer = self._held + text
        if self.marker and self.marker in buffer:
            self._held = ""
            before, _, after = buffer.partition(self.marker)
            return before, after
        keep = _partial_suffix(buffer, self.marker)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], None

    def flush(self) -> str:
        """The held-back text once the stream ended."""
        held, self._held = self._held, ""
        return held


def _partial_suffix(buffer: str, marker: str) -> int:
    for size in range(min(len(marker) - 1, len(buffer)), 0, -1):
        if marker.startswith(buffer[-size:]):
            return size
    return 0


def tool_call_marker(template: Any) -> str:
    """The literal text that opens a tool call in this template's tool format (e.g. `<tool_call>`)."""
    fmt = template.tool_format
    head = fmt.calls_open or fmt.call.split("{", 1)[0] or fmt.call.split("{name}", 1)[0]
    return head.strip() or fmt.call.split("{name}", 1)[0]


class ChatAssembler:
    """Routes generated text into reasoning / content / tool-call deltas (see the module docstring)."""

    def __init__(self, template: Any, *, tools: bool, in_reasoning: bool) -> None:
        self.template = template
        thinking = template.spec.thinking
        self._open = thinking.open if thinking else ""
        self._mode = "reasoning" if in_reasoning else ("start" if thinking else "content")
        self._close = MarkerSplitter(thinking.close if thinking else "")
        self._tools = MarkerSplitter(tool_call_marker(template)) if tools else None
        self._tool_text: str | None = None
        self._start_buffer = ""
        self._lead = self._mode != "content"  # strip newlines right after a thinking block
        self._reasoning_tail = ""
        self._calls_found = False

    def on_event(self, event: Event) -> list[ChatDelta]:
        """Deltas produced by one engine event."""
        if isinstance(event, TextDelta):
            return self._text(event.text)
        if isinstance(event, Failed):
            return [ChatDelta(finish_reason="error", error=event.error)]
        return [*self._flush(), self._final(event)]

    def _text(self, text: str) -> list[ChatDelta]:
        if self._mode == "start":
            text = self._detect_thinking(text)
        if self._mode == "reasoning":
            return self._reasoning_text(text)
        return self._content_text(text) if text else []

    def _detect_thinking(self, text: str) -> str:
        buffer = (self._start_buffer + text).lstrip("\n ")
        if buffer.startswith(self._open):
            self._mode = "reasoning"
            return buffer[len(self._open) :]
        if self._open.startswith(buffer):
            self._start_buffer = buffer
            return ""
        self._mode = "content"
        return self._start_buffer + text

    def _reasoning_text(self, text: str) -> list[ChatDelta]:
        before, after = self._close.feed(text)
        reasoning = self._trim_reasoning(before, final=after is not None)
        out = [ChatDelta(reasoning=reasoning)] if reasoning else []
        if after is not None:
            self._mode = "content"
            out += self._content_text(after)
        return out

    def _trim_reasoning(self, text: str, final: bool) -> str:
        """Drop newlines right after the open marker and right before the close marker."""
        text = self._reasoning_tail + text
        if self._lead:
            text = text.lstrip("\n")
            self._lead = not text
        stripped = text.rstrip("\n")
        self._reasoning_tail = "" if final else text[len(stripped) :]
        if final:
            self._lead = True
        return stripped

    def _content_text(self, text: str) -> list[ChatDelta]:
        if self._lead:
            text = text.lstrip("\n")
            self._lead = not text
        if self._tool_text is not None:
            self._tool_text += text
            return []
        if self._tools is None:
            return [ChatDelta(content=text)] if text else []
        before, after = self._tools.feed(text)
        if after is not None:
            self._tool_text = self._tools.marker + after
        return [ChatDelta(content=before)] if before else []

    def _flush(self) -> list[ChatDelta]:
        out = []
        if self._mode == "start" and self._start_buffer:
            self._mode = "content"
            out += self._content_text(self._start_buffer)
        if self._mode == "reasoning":
            tail = self._close.flush()
            if tail.strip("\n"):
                out.append(ChatDelta(reasoning=tail.rstrip("\n")))
        if self._tools is not None and self._tool_text is None:
            held = self._tools.flush()
            out += [ChatDelta(content=held)] if held else []
        if self._tool_text is not None:
            content, calls = self.template.extract_tool_calls(self._tool_text)
            self._calls_found = bool(calls)
            out.append(ChatDelta(content=content if calls else self._tool_text, tool_calls=_openai_calls(calls)))
        return out

    def _final(self, event: Finished) -> ChatDelta:
        reason = "tool_calls" if self._calls_found and event.reason == "stop" else event.reason
        return ChatDelta(
            finish_reason=reason,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
        )


def _openai_calls(calls: list[dict]) -> list[dict]:
    """Tool calls with JSON-string arguments, as the OpenAI API carries them."""
    import json

    out = []
    for call in calls:
        function = call["function"]
        arguments = function["arguments"]
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        out.append({"type": "function", "function": {"name": function["name"], "arguments": text}})
    return out
