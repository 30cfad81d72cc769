"""Convert raw rows (alpaca, sharegpt, openai, preference, kto, pre-training) to one canonical example form.

A canonical example is a dict with every key present:
`messages` (OpenAI-style: roles user / assistant / tool; assistant tool calls as
`tool_calls: [{"type": "function", "function": {"name", "arguments"}}]` with `arguments` decoded to a dict
when it is JSON, as Hugging Face chat templates expect), `system` (str or None), `tools` (list or None),
`chosen` / `rejected` (an assistant message or None), `kto_tag` (bool or None) and `text` (str or None;
pre-training only). Placeholders such as identity.json's `{{name}}` are kept verbatim.
"""

from __future__ import annotations

import contextlib
import json
import pickle
from functools import partial
from typing import Any

from tuneforge.data.loading import RawRows
from tuneforge.data.registry import DatasetAttr, apply_formatting
from tuneforge.data.report import RowReport


class RowError(ValueError):
    """A row cannot be converted; the message is the reason shown to the user."""


def empty_example() -> dict[str, Any]:
    """A canonical example with every key set to None."""
    return {
        "messages": [],
        "system": None,
        "tools": None,
        "chosen": None,
        "rejected": None,
        "kto_tag": None,
        "text": None,
    }


def convert_rows(raw: RawRows, attr: DatasetAttr, report: RowReport, pretrain: bool = False) -> RawRows:
    """Canonical examples for every valid row; invalid rows go to `report` with their number."""
    if attr.formatting is None:
        detect_formatting(attr, raw.rows[0] if raw.rows else {})
    if pretrain:
        convert = partial(_convert_text, attr=attr)
    elif attr.formatting == "alpaca":
        convert = _alpaca_converter(attr)
    else:
        convert = partial(_convert_sharegpt, attr=attr)
    rows, numbers = [], []
    seen: dict[bytes, Any] = {}  # identical rows share one converted example (or one rejection)
    for number, row in zip(raw.numbers, raw.rows, strict=True):
        key = pickle.dumps(row, 5)
        example = seen.get(key)
        if example is None:
            try:
                example = convert(row)
            except RowError as err:
                example = err
            seen[key] = example
        if isinstance(example, RowError):
            report.bad(raw.name, number, str(example))
            continue
        rows.append(example)
        numbers.append(number)
    return RawRows(raw.name, rows, numbers)


def detect_formatting(attr: DatasetAttr, first: dict[str, Any]) -> None:
    """Pick formatting, columns and tags for a plain file from its first row."""
    columns = {k: v for k, v in attr.columns.items() if v}
    messages_key = next((k for k in ("conversations", "messages") if k in first), None)
    for key in ("chosen", "rejected", "system", "tools"):
        if key in first:
            columns.setdefault(key, key)
    if "chosen" in first and "rejected" in first:
        attr.ranking = True
    if "kto_tag" in first or isinstance(first.get("label"), bool):
        columns.setdefault("kto_tag", "kto_tag" if "kto_tag" in first else "label")
    if messages_key is None:
        if "instruction" not in first and "text" in first:
            columns.setdefault("prompt", "text")
        if "history" in first:
            columns.setdefault("history", "history")
        apply_formatting(attr, "alpaca", columns, attr.tags)
        return
    columns["messages"] = messages_key
    turns = first.get(messages_key) or [{}]
    uses_roles = isinstance(turns[0], dict) and "role" in turns[0]
    apply_formatting(attr, "openai" if uses_roles else "sharegpt", columns, attr.tags)


def _get(row: dict[str, Any], column: str | None, kinds: tuple[type, ...], what: str) -> Any:
    """The value of an optional column, type-checked (None when the column is unset or empty)."""
    if not column:
        return None
    value = row.get(column)
    if value is None or isinstance(value, kinds):
        return value
    names = "/".join(k.__name__ for k in kinds)
    raise RowError(f"column {column!r} ({what}) should be {names}, got {type(value).__name__}")


def _require_str(row: dict[str, Any], column: str | None, what: str) -> str:
    if not column or column not in row:
        raise RowError(f"missing column {column!r} ({what})")
    value = row[column]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"column {column!r} ({what}) should be a string, got {type(value).__name__}")
    return value


def _common(row: dict[str, Any], attr: DatasetAttr, example: dict[str, Any]) -> dict[str, Any]:
    if example["system"] is None:
        example["system"] = _get(row, attr.column("system"), (str,), "system prompt") or None
    example["tools"] = parse_tools(_get(row, attr.column("tools"), (str, list), "tools"))
    tag = _get(row, attr.column("kto_tag"), (bool,), "kto tag")
    example["kto_tag"] = tag
    return example


def parse_tools(value: Any) -> list | None:
    """Tool schemas from a JSON string or a list; None when empty."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RowError(f"tools is not valid JSON ({err.msg} at column {err.colno})") from err
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowError(f"tools should be a JSON list of tool schemas, got {type(value).__name__}")
    return value


def _alpaca_converter(attr: DatasetAttr) -> Any:
    """A row converter for alpaca columns, with the column names looked up once."""
    history_col, query_col, prompt_col = attr.column("history"), attr.column("query"), attr.column("prompt")
    response_col, system_col = attr.column("response"), attr.column("system")
    plain = not (history_col or attr.ranking or attr.column("tools") or attr.column("kto_tag"))

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        query = row.get(query_col) if query_col else None
        prompt = row.get(prompt_col) if prompt_col else None
        response = row.get(response_col) if response_col else None
        system = row.get(system_col) if system_col else None
        simple = type(prompt) is str and type(response) is str
        if plain and simple and isinstance(query, (str, type(None))) and isinstance(system, (str, type(None))):
            example = empty_example()
            content = f"{prompt}\n{query}" if query else prompt
            example["messages"] = [{"role": "user", "content": content}, {"role": "assistant", "content": response}]
            example["system"] = system or None
            return example
        return _convert_alpaca_full(row, attr)

    return convert


def _convert_alpaca_full(row: dict[str, Any], attr: DatasetAttr) -> dict[str, Any]:
    example = empty_example()
    messages: list[dict[str, Any]] = example["messages"]
    for pair in _get(row, attr.column("history"), (list,), "history") or []:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise RowError("history must be a list of [user, assistant] string pairs")
        messages.append({"role": "user", "content": pair[0]})
        messages.append({"role": "assistant", "content": pair[1]})
    query = _get(row, attr.column("query"), (str,), "input")
    prompt = _require_str(row, attr.column("prompt"), "instruction")
    messages.append({"role": "user", "content": f"{prompt}\n{query}" if query else prompt})
    if attr.ranking:
        example["chosen"] = _alpaca_choice(row, attr.column("chosen"), "chosen")
        example["rejected"] = _alpaca_choice(row, attr.column("rejected"), "rejected")
    else:
        response = _get(row, attr.column("response"), (str,), "output")
        if response is not None:
            messages.append({"role": "assistant", "content": response})
    return _common(row, attr, example)


def _alpaca_choice(row: dict[str, Any], column: str | None, what: str) -> dict[str, Any]:
    value = row.get(column) if column else None
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    raise RowError(f"column {column!r} ({what} response) should be a string, got {type(value).__name__}")


def _convert_sharegpt(row: dict[str, Any], attr: DatasetAttr) -> dict[str, Any]:
    example = empty_example()
    turns = _get(row, attr.column("messages"), (list,), "messages")
    if not turns:
        raise RowError(f"column {attr.column('messages')!r} (messages) is missing or empty")
    tags = attr.tags
    first = turns[0]
    if isinstance(first, dict) and tags.get("system_tag") and first.get(tags["role_tag"]) == tags["system_tag"]:
        example["system"] = _content(first, tags, 1)
        turns = turns[1:]
    sharegpt = attr.formatting == "sharegpt"
    for index, turn in enumerate(turns, start=1):
        example["messages"].append(_sharegpt_turn(turn, tags, index, want_user=index % 2 == 1, strict=sharegpt))
    if not sharegpt:
        example["messages"] = _check_openai_order(example["messages"])
    if attr.ranking:
        example["chosen"] = _choice(row, attr.column("chosen"), tags, "chosen")
        example["rejected"] = _choice(row, attr.column("rejected"), tags, "rejected")
    return _common(row, attr, example)


def _content(turn: dict[str, Any], tags: dict[str, str], index: int) -> str:
    value = turn.get(tags["content_tag"])
    if value is None:
        return ""
    if isinstance(value, list):  # OpenAI content parts
        value = "".join(p.get("text", "") for p in value if isinstance(p, dict))
    if not isinstance(value, str):
        raise RowError(f"turn {index}: {tags['content_tag']!r} should be a string, got {type(value).__name__}")
    return value


def _sharegpt_turn(turn: Any, tags: dict[str, str], index: int, want_user: bool, strict: bool) -> dict[str, Any]:
    if not isinstance(turn, dict):
        raise RowError(f"turn {index} is a {type(turn).__name__}, expected an object")
    role = turn.get(tags["role_tag"])
    user_like = (tags["user_tag"], tags["observation_tag"])
    assistant_like = (tags["assistant_tag"], tags["function_tag"])
    if role not in user_like + assistant_like:
        raise RowError(f"turn {index} has unknown role {role!r} (expected one of {list(user_like + assistant_like)})")
    if strict and (role in user_like) != want_user:
        expected = "/".join(user_like if want_user else assistant_like)
        raise RowError(f"turn {index} has role {role!r} where {expected} was expected (turns must alternate)")
    content = _content(turn, tags, index)
    if role == tags["user_tag"]:
        return {"role": "user", "content": content}
    if role == tags["observation_tag"]:
        return {"role": "tool", "content": content}
    if role == tags["function_tag"]:
        return {"role": "assistant", "content": "", "tool_calls": parse_function_call(content, index)}
    message = {"role": "assistant", "content": content}
    if turn.get("tool_calls"):
        message["tool_calls"] = [_tool_call(call, index) for call in turn["tool_calls"]]
    return message


def _check_openai_order(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    previous = "assistant"
    for index, message in enumerate(messages, start=1):
        role = message["role"]
        if role == "tool" and previous not in ("tool", "assistant"):
            raise RowError(f"turn {index}: a tool result must follow an assistant tool call")
        if role in ("user", "assistant") and role == previous:
            raise RowError(f"turn {index}: two {role} turns in a row (turns must alternate)")
        previous = role
    if messages and messages[0]["role"] != "user":
        raise RowError("the first turn (after the system prompt) must be a user turn")
    return messages


def parse_function_call(content: str, index: int) -> list[dict[str, Any]]:
    """A function_call turn's JSON (one call or a list) as OpenAI `tool_calls`."""
    try:
        calls = json.loads(content)
    except json.JSONDecodeError as err:
        raise RowError(f"turn {index}: function call is not valid JSON ({err.msg} at column {err.colno})") from err
    calls = calls if isinstance(calls, list) else [calls]
    return [_tool_call(call, index) for call in calls]


def _tool_call(call: Any, index: int) -> dict[str, Any]:
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise RowError(f"turn {index}: a tool call needs a string 'name' and 'arguments'")
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):  # a raw string stays: some tools take free text
            arguments = json.loads(arguments)
    return {"type": "function", "function": {"name": function["name"], "arguments": arguments}}


def _choice(row: dict[str, Any], column: str | None, tags: dict[str, str], what: str) -> dict[str, Any]:
    value = row.get(column) if column else None
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if not isinstance(value, dict):
        raise RowError(f"column {column!r} ({what} response) should be a turn object, got {type(value).__name__}")
    if value.get(tags["role_tag"]) not in (tags["assistant_tag"], tags["function_tag"]):
        raise RowError(f"{what} response has role {value.get(tags['role_tag'])!r}, expected {tags['assistant_tag']!r}")
    return _sharegpt_turn(value, tags, 0, want_user=False, strict=False)


def _convert_text(row: dict[str, Any], attr: DatasetAttr) -> dict[str, Any]:
    example = empty_example()
    if attr.formatting == "alpaca":
        text = _require_str(row, attr.column("prompt"), "text")
        query = _get(row, attr.column("query"), (str,), "input")
        example["text"] = f"{text}\n{query}" if query else text
    else:
        turns = _get(row, attr.column("messages"), (list,), "messages") or [{}]
        example["text"] = _content(turns[0], attr.tags, 1) if isinstance(turns[0], dict) else ""
    if not example["text"]:
        raise RowError("empty text")
    return example
