"""Ollama's TEMPLATE: Go `text/template` text built generically from a template record's slots (no per-template
code). The Modelfile around it is `tuneforge.export.ollama`'s.

Ollama hands the template `.System` (the system prompt, or the Modelfile's SYSTEM), `.Messages` (each with
`.Role`, `.Content`, `.Thinking`, `.ToolCalls`), `.Tools` and `.Think` / `.IsThinkSet`. Literal text is
emitted as quoted Go strings so whitespace trimming (`{{-`) never eats template text.

Ollama conventions that differ from training-time rendering: the generation prompt follows a final user or
tool message, and a final assistant message is left open (its end-of-turn marker is not written) so the model
continues it. Tool schemas and call arguments are printed by Ollama as compact Go JSON.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any

from tuneforge.data.templates.record import PLACEHOLDER
from tuneforge.data.templates.slots import Var, record_text, slot_pieces

if TYPE_CHECKING:
    from tuneforge.data.templates.record import TemplateSpec, ThinkingSpec
    from tuneforge.data.templates.template import Template
    from tuneforge.data.templates.tools import ToolFormat
# Record fields the translation reads, or that do not change rendered text (names, token lists, training flags)
HANDLED_FIELDS = frozenset(
    [
        "name",
        "aliases",
        "description",
        "special_tokens",
        "stop_words",
        "efficient_eos",
        "replace_eos",
        "tool_format",
        "strip_content",
        "date",
        "bos",
        "eos",
        "prefix",
        "system",
        "system_mode",
        "system_always",
        "system_merge",
        "system_with_tools",
        "default_system",
        "user",
        "assistant_start",
        "assistant",
        "assistant_last",
        "turn_sep",
        "assistant_start_after_tool",
        "observation_open",
        "observation",
        "observation_sep",
        "observation_close",
        "gen_prompt",
        "gen_prompt_after_tool",
        "suffix",
        "tools_in",
        "tools_system",
        "tools_system_empty",
        "system_content",
        "assistant_with_calls",
        "tools_user",
        "user_with_tools",
        "thinking",
        # media: how the data pipeline expands an image / video / audio mark; the text a turn renders is unchanged
        "mm_plugin",
        "image_token",
        "video_token",
        "audio_token",
        "vision_start",
        "vision_end",
    ]
)
HANDLED_THINKING = frozenset(
    [
        "block",
        "empty",
        "keep",
        "empty_on",
        "gen_on",
        "gen_off",
        "open",
        "close",
        "user_suffix_off",
        "system_on",
        "system_off",
        "system_always_on",
    ]
)
THINK_OFF = "(and $.IsThinkSet (not $.Think))"


def lit(text: str) -> str:
    """Go-template action printing `text` verbatim ("" for empty text)."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def slot(spec: TemplateSpec, text: str, **fragments: str) -> str:
    """Go-template text for a record slot; each `{name}` in `fragments` becomes that Go fragment."""
    return _slot_plain(record_text(spec, text), **fragments)


def _slot_plain(text: str, **fragments: str) -> str:
    """`text` with the placeholders named in `fragments` replaced by Go fragments, the rest printed verbatim."""
    return "".join(fragments[p.name] if isinstance(p, Var) else lit(p) for p in slot_pieces(text, fragments))


def _printf(spec: TemplateSpec, text: str, **variables: str) -> str:
    """A `printf` call building `text` from Go variables (for values that must be assigned, not printed)."""
    pieces = slot_pieces(record_text(spec, text), variables)
    args = [variables[p.name] for p in pieces if isinstance(p, Var)]
    formatted = "".join("%s" if isinstance(p, Var) else p.replace("%", "%%") for p in pieces)
    return "printf " + json.dumps(formatted, ensure_ascii=False) + " " + " ".join(args)


def _tools_block(tool_format: ToolFormat) -> str:
    item = _slot_plain(tool_format.tool, json="{{ $t }}", json_indent4="{{ $t }}")
    listing = "{{ range $j, $t := $.Tools }}{{ if $j }}" + lit(tool_format.tools_sep) + "{{ end }}" + item + "{{ end }}"
    return _slot_plain(tool_format.tools_block, tools=listing)


def _line(text: str) -> str:
    """`text` (starting with an action) trimming the newline before it."""
    return "{{-" + text[2:] if text.startswith("{{ ") else text


def _system_slots(spec: TemplateSpec, with_tools: bool) -> tuple[str, str, bool, bool]:
    """(slot when thinking is on, slot when off, always-emit on, always-emit off) for the system turn."""
    slot_text = spec.system_with_tools if with_tools and spec.system_with_tools else spec.system
    thinking = spec.thinking
    if thinking is None:
        return slot_text, slot_text, spec.system_always, spec.system_always
    on = thinking.system_on if thinking.system_on is not None else slot_text
    off = thinking.system_off if thinking.system_off is not None else slot_text
    return on, off, spec.system_always or thinking.system_always_on, spec.system_always


def _by_thinking(on: str, off: str) -> str:
    return on if on == off else "{{ if " + THINK_OFF + " }}" + off + "{{ else }}" + on + "{{ end }}"


def _system_slot(spec: TemplateSpec, with_tools: bool, content: str, always_ok: bool) -> str:
    """The system turn with `content`, thinking-dependent where the record says so."""
    on, off, always_on, always_off = _system_slots(spec, with_tools)
    if always_ok:
        return _by_thinking(slot(spec, on, content=content), slot(spec, off, content=content))
    guard_on = "{{ if " + ("true" if always_on else "$system") + " }}"
    guard_off = "{{ if " + ("true" if always_off else "$system") + " }}"
    return _by_thinking(
        guard_on + slot(spec, on, content=content) + "{{ end }}",
        guard_off + slot(spec, off, content=content) + "{{ end }}",
    )


def _system_part(spec: TemplateSpec, tool_format: ToolFormat) -> str:
    if spec.system_mode == "prefix":
        return "{{- if $system }}{{ $system }}{{ end }}\n"
    if spec.system_mode != "slot":
        return ""
    system = "{{ if $system }}" + slot(spec, spec.system_content, content="{{ $system }}") + "{{ end }}"
    plain = _system_slot(spec, False, system, always_ok=False)
    if spec.tools_in != "system":
        return "{{- if true }}" + plain + "{{ end }}\n"
    tools = _tools_block(tool_format)
    full = _system_slot(spec, True, slot(spec, spec.tools_system, system=system, tools=tools), True)
    text = "{{- if $.Tools }}" + full
    if spec.tools_system_empty is not None:
        empty = _system_slot(spec, True, slot(spec, spec.tools_system_empty, tools=tools), True)
        text = "{{- if $.Tools }}{{ if not $system }}" + empty + "{{ else }}" + full + "{{ end }}"
    return text + "{{ else }}" + plain + "{{ end }}\n"


def _user_part(spec: TemplateSpec, tool_format: ToolFormat) -> str:
    lines = ['{{- if eq .Role "user" }}{{ $content := .Content }}']
    if spec.system_mode in ("first_user", "none", "final_user"):
        where = "(eq $i $firstUser)" if spec.system_mode != "final_user" else "(and (eq $i $lastUser) $last)"
        merged = _printf(spec, spec.system_merge, system="$system", content="$content")
        lines.append("{{- if and $system " + where + " }}{{ $content = " + merged + " }}{{ end }}")
    content = "{{ $content }}"
    if spec.thinking is not None and spec.thinking.user_suffix_off:
        content += "{{ if " + THINK_OFF + " }}" + lit(spec.thinking.user_suffix_off) + "{{ end }}"
    plain = slot(spec, spec.user, content=content)
    if spec.tools_in in ("user", "last_user"):
        tools = _tools_block(tool_format)
        if spec.user_with_tools:
            with_tools = slot(spec, spec.user_with_tools, tools=tools, content=content)
        else:
            with_tools = slot(spec, spec.user, content=slot(spec, spec.tools_user, tools=tools, content=content))
        at = "$firstUser" if spec.tools_in == "user" else "$lastUser"
        lines.append("{{- if and $.Tools (eq $i " + at + ") }}" + with_tools + "{{ else }}" + plain + "{{ end }}")
    else:
        lines.append(_line(plain))
    return "\n".join(lines) + "\n"


def _calls(tool_format: ToolFormat) -> str:
    call = _slot_plain(
        tool_format.call, name="{{ $c.Function.Name }}", arguments="{{ $c.Function.Arguments }}", type=lit("function")
    )
    listing = (
        "{{ range $j, $c := .ToolCalls }}{{ if $j }}" + lit(tool_format.call_sep) + "{{ end }}" + call + "{{ end }}"
    )
    calls = lit(tool_format.calls_open) + listing + lit(tool_format.calls_close)
    keep = (
        "{{ if .Content }}{{ .Content }}" + lit(tool_format.content_sep) + "{{ end }}"
        if tool_format.keep_content
        else ""
    )
    return "{{ if .ToolCalls }}" + keep + calls + "{{ else }}{{ .Content }}{{ end }}"


def _thinking(thinking: ThinkingSpec | None) -> tuple[str, str, str]:
    """(setup, text before the slot, text inside the slot before the content) for a thinking record."""
    if thinking is None:
        return "", "", ""
    kept = {"after_last_user": "(gt $i $lastUser)", "last": "$last", "all": "true"}.get(thinking.keep, "false")
    setup = "{{- $r := .Thinking }}{{ if " + THINK_OFF + ' }}{{ $r = "" }}{{ end }}\n'
    block = _slot_plain(thinking.block, reasoning="{{ $r }}")
    wants = {"all": "true", "kept_last": "(and " + kept + " $last)"}.get(thinking.empty_on, "")
    if not wants or not thinking.empty:
        return setup, "", "{{ if and " + kept + " $r }}" + block + "{{ end }}"
    empty = lit(thinking.empty)
    before = (
        "{{ if not (and " + kept + " $r) }}{{ if and " + wants + " " + THINK_OFF + " }}" + empty + "{{ end }}{{ end }}"
    )
    inside = (
        "{{ if and "
        + kept
        + " $r }}"
        + block
        + "{{ else if and "
        + wants
        + " (not "
        + THINK_OFF
        + ") }}"
        + empty
        + "{{ end }}"
    )
    return setup, before, inside


def _assistant_part(spec: TemplateSpec, tool_format: ToolFormat) -> str:
    start = lit(spec.assistant_start)
    if spec.assistant_start_after_tool is not None:
        start = '{{ if eq $prev "tool" }}' + lit(spec.assistant_start_after_tool) + "{{ else }}" + start + "{{ end }}"
    setup, before, inside = _thinking(spec.thinking)
    content = inside + _calls(tool_format)
    last = _with_calls(spec, _head(spec.assistant_last or spec.assistant), _head(spec.assistant_with_calls), content)
    full = _with_calls(spec, spec.assistant, spec.assistant_with_calls, content) + lit(spec.turn_sep)
    return (
        '{{- else if eq .Role "assistant" }}\n'
        + setup
        + _line(start + before + "{{ if $last }}")
        + last
        + "{{ else }}"
        + full
        + "{{ end }}\n"
    )


def _head(slot_text: str) -> str:
    """A slot cut after its `{content}`: a final assistant message is left open for the model to continue."""
    return slot_text.split("{content}", 1)[0] + "{content}" if "{content}" in slot_text else slot_text


def _with_calls(spec: TemplateSpec, plain: str, with_calls: str, content: str) -> str:
    """The assistant slot, or the record's slot for turns that carry tool calls."""
    if not spec.assistant_with_calls:
        return slot(spec, plain, content=content)
    return (
        "{{ if .ToolCalls }}"
        + slot(spec, with_calls, content=content)
        + "{{ else }}"
        + slot(spec, plain, content=content)
        + "{{ end }}"
    )


def _tool_part(spec: TemplateSpec) -> str:
    item = slot(spec, spec.observation, content="{{ .Content }}", content_json="{{ json .Content }}")
    opener = (
        '{{ if ne $prev "tool" }}' + lit(spec.observation_open) + "{{ else }}" + lit(spec.observation_sep) + "{{ end }}"
    )
    return '{{- else if eq .Role "tool" }}' + opener + item + "\n{{- end }}\n"


def _generation_prompt(spec: TemplateSpec) -> str:
    text = lit(spec.gen_prompt if spec.gen_prompt is not None else spec.assistant_start)
    if spec.thinking is not None:
        text += (
            "{{ if "
            + THINK_OFF
            + " }}"
            + lit(spec.thinking.gen_off)
            + "{{ else }}"
            + lit(spec.thinking.gen_on)
            + "{{ end }}"
        )
    if spec.gen_prompt_after_tool is not None:
        text = '{{ if eq $prev "tool" }}' + lit(spec.gen_prompt_after_tool) + "{{ else }}" + text + "{{ end }}"
    return text


def _prefix_part(spec: TemplateSpec, tool_format: ToolFormat) -> str:
    if not spec.prefix:
        return ""
    tools = "{{ if $.Tools }}" + _tools_block(tool_format) + "{{ end }}" if spec.tools_in == "prefix" else ""
    return _line(slot(spec, spec.prefix, tools=tools)) + "\n"


def go_template(template: Template) -> str:
    """The Ollama TEMPLATE (Go text/template) reproducing `template`'s rendering of a conversation."""
    spec, tool_format = template.spec, template.tool_format
    close = lit(spec.observation_close)
    return (
        '{{- $system := .System }}{{ $prev := "" }}{{ $firstUser := -1 }}{{ $lastUser := -1 }}\n'
        '{{- range $i, $m := .Messages }}{{ if eq $m.Role "user" }}{{ if lt $firstUser 0 }}{{ $firstUser = $i }}'
        "{{ end }}{{ $lastUser = $i }}{{ end }}{{ end }}\n"
        + _prefix_part(spec, tool_format)
        + _system_part(spec, tool_format)
        + "{{- range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}\n"
        + '{{- if and (eq $prev "tool") (ne .Role "tool") }}'
        + close
        + "{{ end }}\n"
        + _user_part(spec, tool_format)
        + _assistant_part(spec, tool_format)
        + _tool_part(spec)
        + '{{- if ne .Role "system" }}{{ $prev = .Role }}{{ end }}\n'
        + "{{- end }}\n"
        + '{{- if eq $prev "tool" }}'
        + close
        + "{{ end }}\n"
        + '{{- if ne $prev "assistant" }}'
        + _generation_prompt(spec)
        + "{{ end }}"
    )


def unsupported_fields(template: Template) -> list[str]:
    """Record fields set to something the Go translation does not reproduce (empty: the TEMPLATE is exact).

    Content whitespace trimming (`strip_content`) is not reproduced either: Ollama passes content as sent.
    """
    spec = template.spec
    out = [f.name for f in fields(spec) if f.name not in HANDLED_FIELDS and getattr(spec, f.name) != _default(f)]
    if spec.thinking is not None:
        out += [
            f"thinking.{f.name}"
            for f in fields(spec.thinking)
            if f.name not in HANDLED_THINKING and getattr(spec.thinking, f.name) != _default(f)
        ]
    return out


HANDLED_TOOL_FORMAT = frozenset(
    [
        "name",
        "tool",
        "tools_sep",
        "tools_block",
        "call",
        "call_sep",
        "calls_open",
        "calls_close",
        "content_sep",
        "keep_content",
        "single_call",
    ]
)
TOOL_PLACEHOLDERS = {"tool": {"json"}, "call": {"name", "arguments", "type"}}


def unsupported_tool_fields(template: Template) -> list[str]:
    """Tool-format and placement settings the Go translation does not reproduce (empty: tool turns are exact)."""
    spec, tool_format = template.spec, template.tool_format
    out = [
        f"tool_format.{f.name}"
        for f in fields(tool_format)
        if f.name not in HANDLED_TOOL_FORMAT and getattr(tool_format, f.name) != _default(f)
    ]
    for name, allowed in TOOL_PLACEHOLDERS.items():
        extra = set(PLACEHOLDER.findall(getattr(tool_format, name))) - allowed
        out += [f"tool_format.{name} {{{p}}}" for p in sorted(extra)]
    if spec.tools_in == "system" and spec.system_mode != "slot":
        out.append(f"tools_in: system with system_mode: {spec.system_mode}")
    return out


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


def stop_words(template: Template) -> list[str]:
    """The strings that end a turn: the template's stop words plus its end-of-sequence text."""
    words = [*template.stop_words, template.spec.eos]
    return [w for w in dict.fromkeys(words) if w]
