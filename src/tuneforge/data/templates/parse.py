"""Parse tool calls out of model output with the same ``ToolFormat`` record that renders them.

Two call layouts are understood:

- ``{arguments}`` formats (Qwen/Hermes ``<tool_call>`` JSON, Llama-3, DeepSeek, Mistral, Command-R...): the
  text before ``{arguments}`` becomes a regular expression (``{name}`` and ``{id}`` captured) and the arguments
  are decoded as one JSON value, which must be followed by the rest of the call text.
- ``{args}`` formats (GLM-4.5+ ``<arg_key>``/``<arg_value>``): the whole call becomes a regular expression and
  its arguments are read one by one through the format's ``arg`` text. A value is decoded as JSON unless the
  tool schema says the parameter is a string (or it is not valid JSON), mirroring how it was written. A call
  that ends with ``{args}`` (LLaMA-Factory's GLM-4.5 calls have no closing tag) runs to the next call or the end.
- ``parse: python`` formats (LFM2): the text between ``calls_open`` and ``calls_close`` is a Python list of
  calls with keyword arguments, read with ``ast`` (never evaluated); ``true``/``false``/``null`` are accepted.

A format with ``extract_also`` falls back to that format's reading when its own finds no call.
"""

from __future__ import annotations

import ast
import json
import re
from typing import TYPE_CHECKING, Any

from tuneforge.data.templates.record import PLACEHOLDER

if TYPE_CHECKING:
    from tuneforge.data.templates.tools import ToolFormat
_CAPTURES = {
    "name": r"(?P<name>[^\"\n<>]+?)",
    "id": r"(?P<id>[\w\-]*)",
}
_XML_CAPTURES = {
    "name": r"(?P<name>[^\s\"<>{}]+)",
    "id": r"(?P<id>[\w\-]*)",
    "args": r"(?P<args>.*?)",
    "key": r"(?P<key>.*?)",
    "value": r"(?P<value>.*?)",
}


def extract_calls(fmt: ToolFormat, text: str, tools: list[dict] | None = None) -> tuple[str, list[dict]]:
    """Split ``text`` into (content, OpenAI-style tool calls with dict arguments) following ``fmt``."""
    calls, first = _calls(fmt, text, tools) if fmt.call else ([], -1)
    if not calls:
        if fmt.fallback is not None:
            return fmt.fallback.extract(text, tools)
        return text, []
    return _content_before(fmt, text[:first]), calls


def _calls(fmt: ToolFormat, text: str, tools: list[dict] | None) -> tuple[list[dict], int]:
    if fmt.parse == "python":
        return _python_calls(fmt, text)
    if "{arguments}" in fmt.call:
        return _json_calls(fmt, text)
    if "{args}" in fmt.call:
        return _xml_calls(fmt, text, _string_params(tools))
    return [], -1


def _regex(template: str, captures: dict[str, str]) -> str:
    out = []
    for index, piece in enumerate(PLACEHOLDER.split(template)):
        if index % 2 == 0:
            out.append(re.escape(piece))
        else:
            out.append(captures.get(piece, r"\w*"))
    return "".join(out)


def _call(match: re.Match[str], arguments: Any, rest: re.Match[str] | None = None) -> dict:
    call: dict[str, Any] = {"type": "function", "function": {"name": match.group("name"), "arguments": arguments}}
    call_id = match.groupdict().get("id") or (rest.groupdict().get("id") if rest else None)
    if call_id:
        call = {"id": call_id, **call}
    return call


def _json_calls(fmt: ToolFormat, text: str) -> tuple[list[dict], int]:
    head, _, tail = fmt.call.partition("{arguments}")
    pattern, decoder = re.compile(_regex(head, _CAPTURES)), json.JSONDecoder()
    after = re.compile(_regex(tail, _CAPTURES))  # the call's rest may carry its id (Mistral-Small-3.1)
    calls: list[dict] = []
    first, pos = -1, 0
    while match := pattern.search(text, pos):
        pos = match.end()
        try:
            arguments, end = decoder.raw_decode(text, match.end())
        except json.JSONDecodeError:
            continue
        rest = after.match(text, end)
        if rest is None:
            continue
        first = match.start() if first < 0 else first
        calls.append(_call(match, arguments, rest))
        pos = rest.end()
    return calls, first


def _xml_calls(fmt: ToolFormat, text: str, strings: dict[str, set[str]]) -> tuple[list[dict], int]:
    regex = _regex(fmt.call, _XML_CAPTURES)
    if fmt.call.endswith("{args}"):  # no closing text: the arguments run to the next call or the end
        head = PLACEHOLDER.split(fmt.call)[0]
        regex += "(?=" + re.escape(fmt.call_sep + head) + r"|\s*\Z)"
    pattern = re.compile(regex, re.DOTALL)
    arg_pattern = re.compile(_regex(fmt.arg, _XML_CAPTURES), re.DOTALL) if fmt.arg else None
    calls: list[dict] = []
    first = -1
    for match in pattern.finditer(text):
        name = match.group("name")
        arguments: Any = {}
        if fmt.quote:
            arguments = _dialect_loads(match.group("args"), fmt.quote)
        for arg in arg_pattern.finditer(match.group("args")) if arg_pattern and not fmt.quote else ():
            key, value = arg.group("key"), arg.group("value")
            arguments[key] = value if key in strings.get(name, set()) else _decode(value)
        first = match.start() if first < 0 else first
        calls.append(_call(match, arguments))
    return calls, first


def _python_calls(fmt: ToolFormat, text: str) -> tuple[list[dict], int]:
    """Calls written as a Python list of ``name(key=value, ...)`` between ``calls_open`` and ``calls_close``."""
    first = text.find(fmt.calls_open) if fmt.calls_open else 0
    end = text.find(fmt.calls_close, first + len(fmt.calls_open)) if fmt.calls_close else len(text)
    if first < 0 or end < 0:
        return [], -1
    body = text[first + len(fmt.calls_open) : end].strip()
    opened, closed = fmt.calls_open.endswith("["), fmt.calls_close.startswith("]")
    source = ("[" if opened else "") + body + ("]" if closed else "")
    try:
        tree = ast.parse(source, mode="eval").body
        nodes = tree.elts if isinstance(tree, ast.List) else [tree]
        calls = [_python_call(node) for node in nodes]
    except (SyntaxError, ValueError):
        return [], -1
    return calls, first


_PY_NAMES = {"true": True, "false": False, "null": None}


def _python_call(node: ast.expr) -> dict:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
        raise ValueError("not a call with keyword arguments")
    arguments = {keyword.arg: _python_value(keyword.value) for keyword in node.keywords}
    return {"type": "function", "function": {"name": node.func.id, "arguments": arguments}}


def _python_value(node: ast.expr) -> Any:
    """A literal; JSON's ``true`` / ``false`` / ``null`` are accepted at any depth."""
    if isinstance(node, ast.Name) and node.id in _PY_NAMES:
        return _PY_NAMES[node.id]
    if isinstance(node, ast.List | ast.Tuple):
        return [_python_value(item) for item in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_python_value(k): _python_value(v) for k, v in zip(node.keys, node.values, strict=True)}
    return ast.literal_eval(node)


_BARE_KEY = re.compile(r"(^|[{,])\s*([^\s{}\[\],:\"]+)\s*:")


def _dialect_loads(text: str, quote: str) -> Any:
    """Arguments written by ``tools.dialect`` (bare keys, ``quote``-marked strings) back to values; the text as is
    when it does not read."""
    parts = text.split(quote)
    if len(parts) % 2 == 0:
        return text
    pieces = [json.dumps(p, ensure_ascii=False) if i % 2 else _BARE_KEY.sub(r'\1"\2":', p) for i, p in enumerate(parts)]
    try:
        return json.loads("{" + "".join(pieces) + "}")
    except json.JSONDecodeError:
        return text


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _string_params(tools: list[dict] | None) -> dict[str, set[str]]:
    """Tool name -> its string-typed parameters, from OpenAI tool schemas."""
    out: dict[str, set[str]] = {}
    for tool in tools or ():
        function = tool.get("function", tool)
        props = (function.get("parameters") or {}).get("properties") or {}
        out[function.get("name", "")] = {k for k, v in props.items() if v.get("type") == "string"}
    return out


def _content_before(fmt: ToolFormat, content: str) -> str:
    for marker in (fmt.calls_open, fmt.content_sep):
        content = content.removesuffix(marker) if marker else content
    if fmt.message:
        before, _, after = fmt.message.partition("{content}")
        content = content.removeprefix(before).removesuffix(after.partition("{calls}")[0])
    return content.strip()
