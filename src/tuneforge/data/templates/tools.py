"""Tool formats: how tool schemas, tool calls and tool results look for a template family.

A tool format is a data record (``tool_formats`` in ``templates.yaml``) with these fields:

- ``tool``: text for one tool schema; ``{json}`` is the schema as JSON, ``{json_indent4}`` the same indented.
- ``tools_sep``: text between tool schemas; ``tools_block``: the block around them (``{tools}``).
- ``call``: text for one call, with ``{name}``, ``{arguments}`` (JSON object text) and ``{type}``.
- ``call_sep``, ``calls_open``, ``calls_close``: how several calls are joined and wrapped.
- ``content_sep``: text between the assistant's own content and its calls (only when content is non-empty);
  ``keep_content: false`` drops the content when the message carries calls (llama3 JSON calls).

``extract_tool_calls`` turns ``call`` into a regular expression, so parsing a model's output is driven by the
same record that renders training data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FIELD = re.compile(r"\{(\w+)\}")


def fill(text: str, **values: str) -> str:
    """Replace ``{key}`` placeholders that name a given value; every other brace is left as is (JSON-safe)."""
    return _FIELD.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), text)


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON exactly as transformers' chat-template ``tojson`` filter writes it (no ASCII escaping)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


@dataclass(frozen=True)
class ToolFormat:
    """How one family writes tool schemas, calls and results (see the module docstring)."""

    name: str
    tool: str = "{json}"
    tools_sep: str = "\n"
    tools_block: str = "{tools}"
    call: str = '{"name": "{name}", "arguments": {arguments}}'
    call_sep: str = "\n"
    calls_open: str = ""
    calls_close: str = ""
    content_sep: str = ""
    keep_content: bool = True
    single_call: bool = False

    def render_tools(self, tools: list[dict]) -> str:
        """The tools block listing every tool schema."""
        items = [fill(self.tool, json=to_json(t), json_indent4=to_json(t, indent=4)) for t in tools]
        return fill(self.tools_block, tools=self.tools_sep.join(items))

    def render_calls(self, content: str, calls: list[dict]) -> str:
        """Assistant text for ``content`` followed by its tool ``calls`` (OpenAI-style dicts)."""
        if self.single_call and len(calls) != 1:
            raise ValueError(f"tool format {self.name!r} supports exactly one tool call per message")
        parts = [self._one_call(call) for call in calls]
        text = self.calls_open + self.call_sep.join(parts) + self.calls_close
        if not self.keep_content or not content:
            return text
        return content + self.content_sep + text

    def _one_call(self, call: dict) -> str:
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            arguments = _parse_arguments(arguments)
        args_text = arguments if isinstance(arguments, str) else to_json(arguments)
        return fill(self.call, name=function["name"], arguments=args_text, type=call.get("type", "function"))

    def extract(self, text: str) -> tuple[str, list[dict]]:
        """Split model output into (content, tool_calls); tool_calls are OpenAI-style dicts with dict args."""
        head, _, tail = self.call.partition("{arguments}")
        pattern, decoder = _head_regex(head), json.JSONDecoder()
        calls, first, pos = [], None, 0
        while match := pattern.search(text, pos):
            pos = match.end()
            try:
                arguments, end = decoder.raw_decode(text, match.end())
            except json.JSONDecodeError:
                continue
            if not text.startswith(tail, end):
                continue
            first = match.start() if first is None else first
            calls.append({"type": "function", "function": {"name": match.group("name"), "arguments": arguments}})
            pos = end + len(tail)
        if not calls:
            return text, []
        content = text[:first]
        for marker in (self.calls_open, self.content_sep):
            content = content.removesuffix(marker) if marker else content
        return content.strip(), calls


def _parse_arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _head_regex(head: str) -> re.Pattern[str]:
    pieces = _FIELD.split(head)
    out = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            out.append(re.escape(piece))
        elif piece == "name":
            out.append(r"(?P<name>[^\"\n<>]+?)")
        else:
            out.append(r"\w*")
    return re.compile("".join(out))
