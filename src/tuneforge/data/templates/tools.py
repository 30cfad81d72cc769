"""Tool formats: how tool schemas, tool calls and tool results look for a template family.

A tool format is a data record (``data/tool_formats.yaml``) with these fields:

- ``tool``: text for one tool schema; ``{json}`` is the schema as JSON, ``{json_indent4}`` the same indented,
  ``{function_json}`` the inner ``function`` object as JSON; ``{name}``, ``{description}``, ``{parameters_json}``,
  ``{signature}`` (Python-typed ``city: str, n: int``) and ``{params}``: ``params_open`` then one ``param``
  per parameter (``{name}``, ``{type}`` Python type, ``{description}``) joined by ``param_sep`` (Hermes, Cohere).
- ``tools_sep``: text between tool schemas; ``tools_block``: the block around them (``{tools}``).
- ``call``: text for one call, with ``{name}``, ``{arguments}`` (JSON object text), ``{type}``, ``{id}`` (the
  call's id) and ``{args}``: the arguments one by one through ``arg`` (``{key}``, ``{value}``: strings as is,
  other values as JSON), joined by ``arg_sep`` (GLM-4.5+ ``<arg_key>``/``<arg_value>`` XML).
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
    arg: str = ""
    arg_sep: str = ""
    param: str = ""
    param_sep: str = ""
    params_open: str = ""

    def render_tools(self, tools: list[dict]) -> str:
        """The tools block listing every tool schema."""
        items = [self._one_tool(t) for t in tools]
        return fill(self.tools_block, tools=self.tools_sep.join(items))

    def _one_tool(self, tool: dict) -> str:
        function = tool.get("function", tool)
        props = (function.get("parameters") or {}).get("properties") or {}
        params = [
            fill(self.param, name=k, type=python_type(v), description=str(v.get("description", "")).strip())
            for k, v in props.items()
        ]
        return fill(
            self.tool,
            json=to_json(tool),
            json_indent4=to_json(tool, indent=4),
            function_json=to_json(function),
            name=function["name"],
            description=function.get("description", ""),
            parameters_json=to_json(function.get("parameters", {})),
            signature=", ".join(f"{k}: {python_type(v)}" for k, v in props.items()),
            params=self.params_open + self.param_sep.join(params) if params and self.param else "",
        )

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
        return fill(
            self.call,
            name=function["name"],
            arguments=args_text,
            type=call.get("type", "function"),
            id=call.get("id") or "",
            args=self._args(arguments),
        )

    def _args(self, arguments: Any) -> str:
        if not self.arg or not isinstance(arguments, dict):
            return ""
        items = [fill(self.arg, key=k, value=v if isinstance(v, str) else to_json(v)) for k, v in arguments.items()]
        return self.arg_sep.join(items)

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


_PY_TYPES = {"string": "str", "number": "float", "integer": "int", "boolean": "bool"}


def python_type(schema: dict) -> str:
    """The Python type name for a JSON-schema property, as the Hermes / Cohere templates write it."""
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _PY_TYPES:
        return _PY_TYPES[kind]
    if kind == "array":
        return f"list[{python_type(schema.get('items') or {})}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"dict[str, {python_type(extra)}]" if isinstance(extra, dict) else "dict"
    if isinstance(kind, list):
        return "Union[" + ",".join(python_type({"type": t}) for t in kind) + "]"
    return "Any"


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
