"""The data records behind every chat template: ``TemplateSpec`` and ``ThinkingSpec``.

Every field is plain text with ``{placeholders}`` (``{content}``, ``{bos}``, ``{eos}``, ``{date}``, ``{system}``,
``{tools}``) or a small enum; ``data/*.yaml`` hold one record per template name. Rendering logic lives in
``render.py`` and never branches on a template's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

PLACEHOLDER = re.compile(r"\{(\w+)\}")  # `{name}` in a record's text; the one pattern every renderer reads


@dataclass(frozen=True)
class ThinkingSpec:
    """How a reasoning family writes its thinking block.

    - ``block``: a turn's reasoning, ``{reasoning}`` placeholder (e.g. ``<think>\\n{reasoning}\\n</think>\\n\\n``).
    - ``empty``: the empty block a turn gets when it has no reasoning ("" = none is inserted);
      ``empty_with_calls``: the one a turn carrying tool calls gets instead, written before the assistant slot's
      own text (None = ``empty``; LLaMA-Factory's GLM-4.7 puts its answers' leading newline into ``empty`` while
      its calls bring their own, and Seed-OSS's call slot opens with bos after the empty block).
    - ``keep``: which assistant turns keep their reasoning: ``after_last_user`` (Qwen3: turns answering the
      last user query), ``last`` (only the final message), ``none`` (all stripped), ``all`` (every turn: what
      LLaMA-Factory's ``preserve_thinking`` asks of any record).
    - ``empty_on``: which turns get ``empty`` when they carry none: ``kept_last`` (the final message when it is
      a kept turn; Qwen3), ``all`` (every assistant turn; DeepSeek-V3.1),
      ``off`` (every assistant turn, only when thinking is off; SmolLM3), ``none``.
    - ``gen_on`` / ``gen_off``: appended to the generation prompt when thinking is on / off.
    - ``open`` / ``close``: the markers used to split inline reasoning out of content.
    - ``user_suffix_off``: appended to every user message when thinking is off (GLM-4.5/4.6 ``/nothink``).
    - ``system_on`` / ``system_off``: the system slot used when thinking is on / off (None = the record's);
      ``system_always_on``: emit the system slot even without system text when thinking is on (Gemma-4).
    - ``default_system_off``: the default system prompt when thinking is off (None = the record's).
    """

    block: str = "<think>\n{reasoning}\n</think>\n\n"
    empty: str = "<think>\n\n</think>\n\n"
    empty_with_calls: str | None = None
    keep: str = "after_last_user"
    empty_on: str = "kept_last"
    gen_on: str = ""
    gen_off: str = "<think>\n\n</think>\n\n"
    open: str = "<think>"
    close: str = "</think>"
    user_suffix_off: str = ""
    system_on: str | None = None
    system_off: str | None = None
    system_always_on: bool = False
    default_system_off: str | None = None


@dataclass(frozen=True)
class TemplateSpec:
    """One chat template as data. Fields that are empty strings render nothing.

    Layout of a conversation: ``prefix`` + system + turns (+ ``gen_prompt`` or ``suffix``). A user turn is
    ``user``; an assistant turn is ``assistant_start`` (prompt side) + ``assistant`` (response side, ends with
    the end-of-turn marker) + ``turn_sep`` (prompt side). ``system_mode`` says where the system text goes:
    ``slot`` (its own ``system`` slot), ``prefix`` (raw text after ``prefix``), ``first_user`` / ``final_user``
    (merged into that user message through ``system_merge``; ``final_user`` merges only when the
    conversation ends with a user message, as the official Mistral templates do), or ``none`` (unsupported: merged like
    ``first_user``). Tool results are grouped: ``observation_open`` + items joined by ``observation_sep`` +
    ``observation_close``. ``user_with_tools`` (with ``{tools}`` and ``{content}``) replaces the ``user`` slot of
    the message that carries the tools (``tools_in: user`` / ``last_user``), for tools placed before the turn.
    ``tools_in`` is ``system``, ``prefix`` (the ``{tools}`` placeholder of ``prefix``), ``user``, ``last_user`` or
    ``none`` (the record cannot render tools: tools, tool calls and tool results raise ``ConfigError``).
    ``tools_replace_default``: with tools and no system text, the default system prompt is left out (Granite-4).
    ``system_content`` wraps non-empty system text inside the system slot (Command-R7B's developer preamble);
    ``assistant_with_calls`` replaces the ``assistant`` slot for turns carrying tool calls (Command-R closes
    those turns differently). Tool results may use ``{call_index}``: the conversation-wide position of the call
    they answer (by ``tool_call_id``, else by order). ``mm_plugin`` names how `<image>` / `<video>` / `<audio>`
    marks become the model's media tokens (LLaMA-Factory's plugin names; "" for text-only templates), with the
    model's ``image_token`` / ``video_token`` / ``audio_token`` and the markers around an image run
    (``vision_start`` / ``vision_end``).
    """

    name: str
    prefix: str = ""
    system: str = "{content}"
    system_mode: str = "slot"
    system_always: bool = False
    system_merge: str = "{system}\n\n{content}"
    system_with_tools: str = ""
    system_content: str = "{content}"
    default_system: str = ""
    user: str = "{content}"
    assistant_start: str = ""
    assistant: str = "{content}"
    assistant_last: str = ""
    assistant_with_calls: str = ""
    turn_sep: str = ""
    assistant_start_after_tool: str | None = None
    observation_open: str = ""
    observation: str = "{content}"
    observation_sep: str = ""
    observation_close: str = ""
    gen_prompt: str | None = None
    gen_prompt_after_tool: str | None = None
    suffix: str = ""
    strip_content: bool = False
    stop_words: tuple[str, ...] = ()
    efficient_eos: bool = False
    replace_eos: bool = False
    tool_format: str = "qwen"
    tools_in: str = "system"
    tools_system: str = "{system}\n\n{tools}"
    tools_system_empty: str | None = None
    tools_replace_default: bool = False
    tools_user: str = "{tools}{content}"
    user_with_tools: str = ""
    thinking: ThinkingSpec | None = None
    special_tokens: tuple[str, ...] = ()
    date: str = "26 Jul 2024"
    bos: str = ""
    eos: str = ""
    aliases: tuple[str, ...] = field(default=())
    description: str = ""
    mm_plugin: str = ""
    image_token: str = ""
    video_token: str = ""
    audio_token: str = ""
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"

    @classmethod
    def from_dict(cls, name: str, data: dict) -> TemplateSpec:
        """Build a record from a YAML mapping, rejecting unknown keys so typos fail loudly."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"template {name!r}: unknown keys {sorted(unknown)}")
        values = dict(data)
        if isinstance(values.get("thinking"), dict):
            values["thinking"] = ThinkingSpec(**values["thinking"])
        for key in ("stop_words", "special_tokens", "aliases"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(name=name, **values)
