"""Export a template record as a Jinja chat template, so saved tokenizers carry the format they were trained on.

The export covers plain conversations (system / user / assistant, generation prompt) and the record's
system placement. Tool calls and thinking blocks are not exported: for thinking families (qwen3, qwq,
deepseekr1, ...) save the family's official Jinja instead.
"""

from __future__ import annotations

import json

from tuneforge.data.templates.record import TemplateSpec
from tuneforge.data.templates.slots import Var, record_text, slot_pieces
from tuneforge.data.templates.tools import fill


def _lit(spec: TemplateSpec, text: str, content: str = "content", system: str = "system") -> str:
    """A Jinja expression for ``text`` with ``{content}`` / ``{system}`` bound to Jinja variables."""
    variables = {"content": content, "system": system}
    pieces = slot_pieces(record_text(spec, text), variables)
    return " + ".join(variables[p.name] if isinstance(p, Var) else json.dumps(p) for p in pieces) or '""'


def spec_to_jinja(spec: TemplateSpec) -> str:
    """A Jinja chat template rendering plain conversations exactly like ``spec``."""
    strip = " | trim" if spec.strip_content else ""
    default = json.dumps(fill(spec.default_system, date=spec.date))
    merge_first = json.dumps(spec.system_mode in ("first_user", "none")).lower()
    merge_final = json.dumps(spec.system_mode == "final_user").lower()
    lines = [
        "{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else "
        + default
        + " %}",
        "{%- set loop_messages = messages[1:] if messages and messages[0]['role'] == 'system' else messages %}",
        "{{- " + _lit(spec, spec.prefix) + " }}",
    ]
    if spec.system_mode == "prefix":
        lines.append("{{- system }}")
    elif spec.system_mode == "slot":
        cond = "true" if spec.system_always else "system"
        lines.append("{%- if " + cond + " %}{{- " + _lit(spec, spec.system, content="system") + " }}{%- endif %}")
    lines += [
        "{%- for message in loop_messages %}",
        "{%- set content = message['content']" + strip + " %}",
        "{%- if message['role'] == 'user' %}",
        "{%- if system and ((loop.first and " + merge_first + ") or (loop.last and " + merge_final + ")) %}",
        "{%- set content = " + _lit(spec, spec.system_merge) + " %}",
        "{%- endif %}",
        "{{- " + _lit(spec, spec.user) + " }}",
        "{%- elif message['role'] == 'assistant' %}",
        "{{- "
        + _lit(spec, spec.assistant_start)
        + " + "
        + _lit(spec, spec.assistant)
        + " + "
        + _lit(spec, spec.turn_sep)
        + " }}",
        "{%- endif %}",
        "{%- endfor %}",
        "{%- if add_generation_prompt %}{{- "
        + _lit(spec, spec.gen_prompt if spec.gen_prompt is not None else spec.assistant_start)
        + " }}{%- else %}{{- "
        + _lit(spec, spec.suffix)
        + " }}{%- endif %}",
    ]
    return "\n".join(lines)
