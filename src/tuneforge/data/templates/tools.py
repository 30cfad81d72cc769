"""Tool formats: how tool schemas, tool calls and tool results look for a template family.

A tool format is a data record (``data/tool_formats.yaml``) with these fields:

- ``tool``: text for one tool schema; ``{json}`` is the schema as JSON, ``{json_indent4}`` the same indented,
  ``{function_json}`` / ``{function_json_indent4}`` the inner ``function`` object as JSON, ``{raw_json}`` the
  schema exactly as the data gave it (bare function or wrapped); ``{name}``, ``{description}``,
  ``{parameters_json}``, ``{signature}`` (one ``sig_param`` per parameter, ``sig_param_optional`` for those not
  ``required``, joined by ", ") and ``{params}``: ``params_open`` then one ``param`` per parameter (``{name}``,
  ``{type}`` Python type, ``{description}``, ``{schema_type}`` the schema's own type, ``{required}`` =
  ``param_required`` for required ones, ``{enum}`` = ``param_enum`` with ``{values}`` when the schema lists them,
  ``{items}`` = ``param_items`` with the items' ``{type}`` for arrays) joined by ``param_sep`` (Hermes, Cohere,
  LLaMA-Factory's default). A parameter that is not required has its ``{type}`` written through
  ``optional_type`` (Cohere: ``Optional[{type}]``); ``typing_names`` writes ``List[..]`` / ``Dict[str, ..]``
  instead of ``list[..]`` / ``dict``.
- ``tools_sep``: text between tool schemas; ``tools_block``: the block around them (``{tools}``; ``{tool_names}``
  lists the tools' names joined by ", ").
- ``call``: text for one call, with ``{name}``, ``{arguments}`` (JSON object text, indented by
  ``arguments_indent`` with continuation lines shifted by ``arguments_nest`` spaces when set), ``{type}``,
  ``{id}`` (the call's id), ``{index}`` (the call's position in the conversation, from 0) and ``{args}``: the
  arguments one by one through ``arg`` (``{key}``, ``{value}``: strings as is, other values as JSON), joined by
  ``arg_sep`` (GLM-4.5+ ``<arg_key>``/``<arg_value>`` XML); ``arg_string`` (when set) writes string values
  instead (LFM2's ``key="value"`` beside ``key=3``). ``quote`` (when set) writes ``{args}`` in a JSON-like
  dialect instead: object keys bare and sorted, strings between ``quote`` marks, unescaped (Gemma-4's
  ``<|"|>``); the tool text's ``{function_dialect}`` is then the function's description and parameters in
  that dialect, as a Gemini-style declaration (property description and type, required, upper-case types).
- ``call_sep``, ``calls_open``, ``calls_close``: how several calls are joined and wrapped.
- ``content_sep``: text between the assistant's own content and its calls (only when content is non-empty);
  ``keep_content: false`` drops the content when the message carries calls (llama3 JSON calls).
  ``message`` (with ``{content}`` and ``{calls}``) instead lays out the whole message, e.g. Command-R7B's
  ``<|START_THINKING|>{content}<|END_THINKING|><|START_ACTION|>{calls}<|END_ACTION|>``.

``extract_tool_calls`` turns ``call`` into a regular expression, so parsing a model's output is driven by the
same record that renders training data. ``parse: python`` reads the text between ``calls_open`` and
``calls_close`` as a Python list of calls with keyword arguments instead (LFM2's pythonic calls);
``extract_also`` names another tool format whose calls are also understood when this one finds none (LLaMA-Factory
reads GLM-4.5 and Ling output as Qwen JSON calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tuneforge.data.templates.record import PLACEHOLDER


def fill(text: str, **values: str) -> str:
    """Replace ``{key}`` placeholders that name a given value; every other brace is left as is (JSON-safe)."""
    parts = _parts(text)
    if len(parts) == 1:
        return text
    out = [parts[0]]
    for index in range(1, len(parts), 2):
        name = parts[index]
        out.append(values[name] if name in values else "{" + name + "}")
        out.append(parts[index + 1])
    return "".join(out)


@lru_cache(maxsize=4096)
def _parts(text: str) -> tuple[str, ...]:
    """``text`` split at its ``{name}`` placeholders: literal, name, literal, ... (templates repeat; split once)."""
    return tuple(PLACEHOLDER.split(text))


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
    message: str = ""
    single_call: bool = False
    arg: str = ""
    arg_sep: str = ""
    arg_string: str = ""
    parse: str = "template"
    quote: str = ""
    extract_also: str = ""
    fallback: ToolFormat | None = field(default=None, repr=False)  # the ``extract_also`` record (set on load)
    arguments_indent: int = 0
    arguments_nest: int = 0
    param: str = ""
    param_sep: str = ""
    param_required: str = ""
    param_enum: str = ""
    param_items: str = ""
    params_open: str = ""
    sig_param: str = "{name}: {type}"
    sig_param_optional: str = ""
    optional_type: str = "{type}"
    typing_names: bool = False

    @property
    def can_render_calls(self) -> bool:
        """False for formats that have no text for a tool call (rendering calls with them raises)."""
        return bool(self.call)

    def render_tools(self, tools: list[dict]) -> str:
        """The tools block listing every tool schema (bare function dicts are wrapped first, see `wrap_tool`)."""
        items = [self._one_tool(wrap_tool(t), t) for t in tools]
        names = ", ".join(wrap_tool(t)["function"]["name"] for t in tools)
        return fill(self.tools_block, tools=self.tools_sep.join(items), tool_names=names)

    def _one_tool(self, tool: dict, raw: dict) -> str:
        function = tool["function"]
        parameters = function.get("parameters") or {}
        props = parameters.get("properties") or {}
        required = set(parameters.get("required") or ())
        sig, params = [], []
        for key, schema in props.items():
            kind = python_type(schema, self.typing_names)
            if key not in required:
                kind = fill(self.optional_type, type=kind)
            slot = self.sig_param_optional if key not in required and self.sig_param_optional else self.sig_param
            sig.append(fill(slot, name=key, type=kind))
            params.append(self._one_param(key, schema, kind, key in required))
        return fill(
            self.tool,
            json=to_json(tool),
            json_indent4=to_json(tool, indent=4),
            function_json=to_json(function),
            function_json_indent4=to_json(function, indent=4),
            raw_json=to_json(raw),
            function_dialect=dialect(declaration(function), self.quote) if self.quote else "",
            name=function["name"],
            description=function.get("description", ""),
            parameters_json=to_json(function.get("parameters", {})),
            signature=", ".join(sig),
            params=self.params_open + self.param_sep.join(params) if params and self.param else "",
        )

    def _one_param(self, key: str, schema: Any, kind: str, required: bool) -> str:
        schema = schema if isinstance(schema, dict) else {}
        enum, items = schema.get("enum"), schema.get("items")
        return fill(
            self.param,
            name=key,
            type=kind,
            description=str(schema.get("description", "")).strip(),
            schema_type=str(schema.get("type", "")),
            required=self.param_required if required else "",
            enum=fill(self.param_enum, values=", ".join(map(str, enum))) if enum else "",
            items=fill(self.param_items, type=str(items.get("type", ""))) if isinstance(items, dict) and items else "",
        )

    def render_calls(self, content: str, calls: list[dict], start: int = 0) -> str:
        """Assistant text for ``content`` followed by its tool ``calls`` (OpenAI-style dicts).

        ``start`` is the conversation-wide index of the first call (the ``{index}`` placeholder).
        """
        if not self.can_render_calls:
            raise ValueError(f"tool format {self.name!r} cannot render tool calls")
        if self.single_call and len(calls) != 1:
            raise ValueError(f"tool format {self.name!r} supports exactly one tool call per message")
        parts = [self._one_call(call, start + offset) for offset, call in enumerate(calls)]
        text = self.calls_open + self.call_sep.join(parts) + self.calls_close
        if self.message:
            return fill(self.message, content=content, calls=text)
        if not self.keep_content or not content:
            return text
        return content + self.content_sep + text

    def _one_call(self, call: dict, index: int) -> str:
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            arguments = _parse_arguments(arguments)
        if isinstance(arguments, str):
            args_text = arguments
        else:
            args_text = to_json(arguments, indent=self.arguments_indent or None)
            args_text = args_text.replace("\n", "\n" + " " * self.arguments_nest)
        return fill(
            self.call,
            name=function["name"],
            arguments=args_text,
            type=call.get("type", "function"),
            id=call.get("id") or "",
            index=str(index),
            args=self._args(arguments),
        )

    def _args(self, arguments: Any) -> str:
        if not self.arg or not isinstance(arguments, dict):
            return ""
        if self.quote:
            return self.arg_sep.join(
                fill(self.arg, key=k, value=dialect(arguments[k], self.quote, sort=True)) for k in sorted(arguments)
            )
        items = [
            fill(self.arg_string or self.arg, key=k, value=v)
            if isinstance(v, str)
            else fill(self.arg, key=k, value=to_json(v))
            for k, v in arguments.items()
        ]
        return self.arg_sep.join(items)

    def extract(self, text: str, tools: list[dict] | None = None) -> tuple[str, list[dict]]:
        """Split model output into (content, tool_calls); tool_calls are OpenAI-style dicts with dict args.

        ``tools`` (the schemas offered to the model) lets formats that write arguments one by one (GLM's
        ``<arg_value>``) keep string-typed values as strings even when they look like JSON numbers.
        """
        from tuneforge.data.templates.parse import extract_calls

        return extract_calls(self, text, tools)


def wrap_tool(tool: dict) -> dict:
    """One form for a tool schema: OpenAI's ``{"type": "function", "function": {...}}``.

    Glaive / LLaMA-Factory datasets list bare function dicts (``{"name", "description", "parameters"}``) while
    API clients send the wrapped form; both render the same text (as LLaMA-Factory's tool formats do), so
    training, preview, the API and the web chat show the model one thing.
    """
    if isinstance(tool.get("function"), dict):
        return tool if "type" in tool else {"type": "function", **tool}
    return {"type": "function", "function": tool}


def dialect(value: Any, quote: str, sort: bool = False) -> str:
    """``value`` as JSON with bare object keys and strings between ``quote`` marks (Gemma-4's tool syntax)."""
    if isinstance(value, str):
        return quote + value + quote
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        keys = sorted(value) if sort else list(value)
        return "{" + ",".join(f"{k}:{dialect(value[k], quote, sort)}" for k in keys) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dialect(v, quote, sort) for v in value) + "]"
    return str(value)


def declaration(function: dict) -> dict:
    """A function schema as a Gemini-style declaration: description, then parameters with each property's
    description and upper-case type, the required names and the upper-case type (parts that are empty left out)."""
    out: dict[str, Any] = {"description": function.get("description", "")}
    params = function.get("parameters")
    if not params:
        return out
    part: dict[str, Any] = {}
    if params.get("properties"):
        part["properties"] = {
            key: {k: str(v).upper() if k == "type" else v for k in ("description", "type") if (v := prop.get(k))}
            for key, prop in params["properties"].items()
        }
    if params.get("required"):
        part["required"] = list(params["required"])
    if params.get("type"):
        part["type"] = str(params["type"]).upper()
    out["parameters"] = part
    return out


_PY_TYPES = {"string": "str", "number": "float", "integer": "int", "boolean": "bool"}


def python_type(schema: Any, typing_names: bool = False) -> str:
    """The Python type name for a JSON-schema property, as the Hermes (``list[..]``) / Cohere (``List[..]``)
    templates write it. Boolean schemas and tuple-form ``items`` (a list) have no single type: ``Any``."""
    if not isinstance(schema, dict):
        return "Any"
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _PY_TYPES:
        return _PY_TYPES[kind]
    if kind == "array":
        inner = python_type(schema.get("items") or {}, typing_names)
        return f"List[{inner}]" if typing_names else f"list[{inner}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        value = python_type(extra, typing_names) if isinstance(extra, dict) else None
        if typing_names:
            return f"Dict[str, {value or 'Any'}]"
        return f"dict[str, {value}]" if value else "dict"
    if isinstance(kind, list):
        return "Union[" + ",".join(python_type({"type": t}, typing_names) for t in kind) + "]"
    return "Any"


def _parse_arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
