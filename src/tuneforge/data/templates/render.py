"""Generic renderer: turns a conversation into text segments, each marked prompt or response.

The renderer reads a ``TemplateSpec`` (``record.py``) and a ``ToolFormat`` (``tools.py``); it has no branch
on template names. ``render_segments`` is the single source for ``Template.render`` (join the texts) and
``Template.encode_turns`` (group prompt / response segments into training pairs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.templates.record import TemplateSpec, ThinkingSpec
from tuneforge.data.templates.tools import ToolFormat, fill, to_json
from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text; ``response`` is True for text the model is trained to produce."""

    text: str
    response: bool = False


@dataclass
class _Context:
    spec: TemplateSpec
    tool_format: ToolFormat
    enable_thinking: bool | None
    out: list[Segment]
    calls_seen: int = 0
    call_ids: dict[str, int] = field(default_factory=dict)
    last_calls: int = 0

    def emit(self, slot: str, response: bool = False, **values: str) -> None:
        spec = self.spec
        text = fill(slot, bos=spec.bos, eos=spec.eos, date=spec.date, **values)
        if text:
            self.out.append(Segment(text, response))


def split_reasoning(text: str, thinking: ThinkingSpec | None) -> tuple[str, str]:
    """Split ``<think>..</think>`` style inline reasoning from content: returns (reasoning, content)."""
    if thinking is None or thinking.close not in text:
        return "", text
    head, _, content = text.partition(thinking.close)
    reasoning = head.split(thinking.open, 1)[-1]
    return reasoning.strip("\n"), content.lstrip("\n")


def render_segments(
    spec: TemplateSpec,
    tool_format: ToolFormat,
    messages: list[dict],
    system: str | None = None,
    tools: list[dict] | None = None,
    add_generation_prompt: bool = False,
    enable_thinking: bool | None = True,
) -> list[Segment]:
    """Render ``messages`` (roles user / assistant / tool) into segments following ``spec``."""
    messages = _normalise(spec, messages)
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    _check_tool_support(spec, tool_format, messages, tools)
    ctx = _Context(spec, tool_format, enable_thinking, [])
    thinking_off = spec.thinking is not None and enable_thinking is False
    default = spec.default_system
    if thinking_off and spec.thinking.default_system_off is not None:
        default = spec.thinking.default_system_off
    if system is None and tools and spec.tools_replace_default:
        default = ""
    system_text = fill(default, date=spec.date) if system is None else system
    tools_text = tool_format.render_tools(tools) if tools else ""
    if tools_text and spec.tools_in == "system" and spec.system_mode != "slot":
        system_text = _with_tools(spec, system_text, tools_text)  # travels with the raw or merged system text
    ctx.emit(spec.prefix, tools=tools_text if spec.tools_in == "prefix" else "")
    _emit_system(ctx, system_text, tools_text)
    _emit_turns(ctx, messages, system_text, tools_text)
    last_role = messages[-1]["role"] if messages else None
    if add_generation_prompt:
        _emit_generation_prompt(ctx, after_tool=last_role == "tool")
    else:
        ctx.emit(spec.suffix)
    if tools_text and tools_text not in "".join(s.text for s in ctx.out):
        raise ConfigError(
            f"template {spec.name!r}: the conversation's tool schemas would not appear in the rendered text "
            "(this record places them where this conversation has no slot); pick a template with tool support"
        )
    return ctx.out


def _check_tool_support(spec: TemplateSpec, tool_format: ToolFormat, messages: list[dict], tools: Any) -> None:
    """Raise instead of silently dropping tools, tool calls or tool results a record cannot render."""
    has_calls = any(m.get("tool_calls") for m in messages)
    used = [
        what
        for what, present in (
            ("tool schemas (`tools`)", bool(tools)),
            ("assistant tool calls", has_calls),
            ("tool results (role `tool`)", any(m["role"] == "tool" for m in messages)),
        )
        if present
    ]
    if used and (spec.tools_in == "none" or (has_calls and not tool_format.can_render_calls)):
        raise ConfigError(
            f"template {spec.name!r} cannot render {', '.join(used)}: its record has no tool format, and "
            "dropping them would train on text the model never sees. Remove the tools/function-call columns "
            "from this dataset or use a template with tool support (`tuneforge data templates`)"
        )


def _with_tools(spec: TemplateSpec, system_text: str, tools_text: str) -> str:
    joiner = spec.tools_system_empty if not system_text and spec.tools_system_empty is not None else None
    return fill(joiner or spec.tools_system, system=system_text, tools=tools_text)


def _normalise(spec: TemplateSpec, messages: list[dict]) -> list[dict]:
    out = []
    for message in messages:
        content = message.get("content") or ""
        if spec.strip_content:
            content = _strip_text(spec, content)
        out.append({**message, "content": content})
    return out


def _strip_text(spec: TemplateSpec, content: str) -> str:
    """`strip_content` trims the text, not the whitespace an expanded image run brings at either end (Gemma 3's
    processor puts `\\n\\n<start_of_image>...<end_of_image>\\n\\n` after its template trims the text)."""
    if not spec.mm_plugin or spec.vision_start not in content:
        return content.strip()
    runs = re.compile(f"{re.escape(spec.vision_start)}.*?{re.escape(spec.vision_end)}", re.DOTALL)
    found = iter(runs.findall(content))
    return re.sub("\x00", lambda _: next(found), runs.sub("\x00", content).strip())


def _emit_system(ctx: _Context, system_text: str, tools_text: str) -> None:
    spec = ctx.spec
    if spec.system_mode == "prefix":
        ctx.emit(system_text)
        return
    if spec.system_mode != "slot":
        return
    content = fill(spec.system_content, content=system_text) if system_text else ""
    if tools_text and spec.tools_in == "system":
        content = _with_tools(spec, content, tools_text)
    slot, always = _system_slot(ctx, bool(tools_text))
    if content or always or (tools_text and spec.tools_in == "system"):
        ctx.emit(slot, content=content)


def _system_slot(ctx: _Context, with_tools: bool) -> tuple[str, bool]:
    """The system slot text and whether it is emitted even when empty (thinking may change both)."""
    spec, thinking = ctx.spec, ctx.spec.thinking
    slot = spec.system_with_tools if with_tools and spec.system_with_tools else spec.system
    always = spec.system_always
    if thinking is not None and ctx.enable_thinking is False and thinking.system_off is not None:
        slot = thinking.system_off
    if thinking is not None and ctx.enable_thinking is True:
        slot = thinking.system_on if thinking.system_on is not None else slot
        always = always or thinking.system_always_on
    return slot, always


def _merge_target(spec: TemplateSpec, messages: list[dict]) -> int:
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users or spec.system_mode == "slot" or spec.system_mode == "prefix":
        return -1
    if spec.system_mode == "final_user":  # official Mistral: only when the conversation ends with it
        return users[-1] if users[-1] == len(messages) - 1 else -1
    return users[0]


def _emit_turns(ctx: _Context, messages: list[dict], system_text: str, tools_text: str) -> None:
    spec = ctx.spec
    merge_at = _merge_target(spec, messages)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    tools_at = next((i for i, m in enumerate(messages) if m["role"] == "user"), -1)
    tools_at = last_user if spec.tools_in == "last_user" else tools_at
    user_suffix = ""
    if spec.thinking is not None and ctx.enable_thinking is False:
        user_suffix = spec.thinking.user_suffix_off
    index = 0
    while index < len(messages):
        message = messages[index]
        role = message["role"]
        if role == "user":
            content = message["content"]
            if index == merge_at and system_text:
                content = fill(spec.system_merge, system=system_text, content=content)
            slot = spec.user
            if index == tools_at and tools_text and spec.tools_in in ("user", "last_user"):
                slot = fill(spec.user_with_tools, tools=tools_text) if spec.user_with_tools else slot
                content = content if spec.user_with_tools else fill(spec.tools_user, tools=tools_text, content=content)
            ctx.emit(slot, content=content + user_suffix)
        elif role == "assistant":
            after_tool = index > 0 and messages[index - 1]["role"] == "tool"
            is_last = index == len(messages) - 1
            _emit_assistant(ctx, message, after_tool, is_last, kept=_kept(spec, index, last_user, is_last))
        elif role == "tool":
            end = index
            while end < len(messages) and messages[end]["role"] == "tool":
                end += 1
            _emit_observations(ctx, messages[index:end])
            index = end
            continue
        else:
            raise ValueError(f"message {index}: unknown role {role!r} (expected user, assistant or tool)")
        index += 1


def _kept(spec: TemplateSpec, index: int, last_user: int, is_last: bool) -> bool:
    keep = spec.thinking.keep if spec.thinking else "none"
    return keep == "all" or (keep == "after_last_user" and index > last_user) or (keep == "last" and is_last)


def _emit_assistant(ctx: _Context, message: dict, after_tool: bool, is_last: bool, kept: bool) -> None:
    spec = ctx.spec
    start = spec.assistant_start
    if after_tool and spec.assistant_start_after_tool is not None:
        start = spec.assistant_start_after_tool
    reasoning, content = _reasoning_of(message, spec.thinking)
    think_text, think_is_response = _think_text(ctx, reasoning, kept, is_last, bool(message.get("tool_calls")))
    start, lead = _split_start(spec, start, after_tool, think_text and not think_is_response)
    ctx.emit(start)
    if think_text and not think_is_response:
        ctx.emit(think_text)
        think_text = ""
    think_text = lead + think_text
    slot = spec.assistant_last if is_last and spec.assistant_last else spec.assistant
    if message.get("tool_calls"):
        content = _render_calls(ctx, content, message["tool_calls"])
        slot = spec.assistant_with_calls or slot
        if think_text and spec.thinking is not None and think_text == spec.thinking.empty_with_calls:
            ctx.emit(think_text, response=True)  # before the slot's own text, as LLaMA-Factory writes it
            think_text = ""
    ctx.emit(slot, response=True, content=think_text + content)
    ctx.emit(spec.turn_sep)


def _split_start(spec: TemplateSpec, start: str, after_tool: bool, prompt_think: bool) -> tuple[str, str]:
    """(prompt part, response part) of an assistant header: text the generation prompt does not show (GLM-4.5's
    newline after ``<|assistant|>``) is written by the model at inference, so it is trained as response."""
    gen = spec.gen_prompt
    if gen is None or after_tool or prompt_think or start == gen or not start.startswith(gen):
        return start, ""
    return gen, start[len(gen) :]


def _reasoning_of(message: dict, thinking: ThinkingSpec | None) -> tuple[str, str]:
    reasoning = message.get("reasoning_content")
    if reasoning is not None:
        return reasoning.strip("\n"), message["content"].lstrip("\n") if reasoning else message["content"]
    return split_reasoning(message["content"], thinking)


def _think_text(ctx: _Context, reasoning: str, kept: bool, is_last: bool, calls: bool) -> tuple[str, bool]:
    """The thinking text for one assistant turn and whether it belongs to the response."""
    thinking = ctx.spec.thinking
    if thinking is None:
        return "", False
    if ctx.enable_thinking is False:
        reasoning = ""
    if kept and reasoning:
        return fill(thinking.block, reasoning=reasoning), True
    wants_empty = (
        thinking.empty_on == "all"
        or (thinking.empty_on == "kept_last" and kept and is_last)
        or (thinking.empty_on == "off" and ctx.enable_thinking is False)
    )
    empty = thinking.empty_with_calls if calls and thinking.empty_with_calls is not None else thinking.empty
    if not wants_empty or not empty:
        return "", False
    return empty, ctx.enable_thinking is True


def _render_calls(ctx: _Context, content: str, calls: list[dict]) -> str:
    """The calls' text; remembers their conversation-wide positions for the results that answer them."""
    text = ctx.tool_format.render_calls(content, calls, start=ctx.calls_seen)
    ctx.last_calls = ctx.calls_seen
    for call in calls:
        if call.get("id"):
            ctx.call_ids.setdefault(call["id"], ctx.calls_seen)
        ctx.calls_seen += 1
    return text


def _emit_observations(ctx: _Context, results: list[dict]) -> None:
    spec = ctx.spec
    items = []
    for position, m in enumerate(results):
        call_id = m.get("tool_call_id") or ""
        items.append(
            fill(
                spec.observation,
                content=m["content"],
                content_json=to_json(m["content"]),
                tool_call_id=call_id,
                call_index=str(ctx.call_ids.get(call_id, ctx.last_calls + position)),
            )
        )
    ctx.emit(spec.observation_open + spec.observation_sep.join(items) + spec.observation_close)


def _emit_generation_prompt(ctx: _Context, after_tool: bool) -> None:
    spec = ctx.spec
    text = spec.gen_prompt if spec.gen_prompt is not None else spec.assistant_start
    if after_tool and spec.gen_prompt_after_tool is not None:
        text = spec.gen_prompt_after_tool
    elif spec.thinking is not None:
        text += spec.thinking.gen_on if ctx.enable_thinking is True else spec.thinking.gen_off
    ctx.emit(text)
