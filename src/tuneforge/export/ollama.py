"""Ollama `Modelfile`: FROM, TEMPLATE, SYSTEM and PARAMETER stop lines. The TEMPLATE is the template record
rendered as Go `text/template` by `tuneforge.data.templates.gotemplate`, beside the Jinja renderer for tokenizers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.data.templates.gotemplate import go_template, stop_words, unsupported_fields, unsupported_tool_fields
from tuneforge.data.templates.tools import fill

if TYPE_CHECKING:
    from tuneforge.data.templates import Template

logger = logging.getLogger(__name__)

__all__ = [
    "go_template",
    "modelfile_text",
    "stop_words",
    "unsupported_fields",
    "unsupported_tool_fields",
    "write_modelfile",
]


def modelfile_text(template: Template, source: str = ".", note: str | None = None) -> str:
    """The Modelfile for a model at `source` (a folder of safetensors or a .gguf file) chatting with `template`;
    `note` (e.g. what Ollama can do with a vision-language model) becomes a comment at the top."""
    spec = template.spec
    lines = [f"# tuneforge: {note}", ""] if note else []
    lines += [f"FROM {source}", ""]
    missing = unsupported_fields(template)
    if missing:
        logger.warning("Modelfile TEMPLATE for %s approximates record fields %s", spec.name, ", ".join(missing))
        lines += [f"# tuneforge: the TEMPLATE approximates template {spec.name!r} (fields: {', '.join(missing)})", ""]
    lines += [f'TEMPLATE """{go_template(template)}"""', ""]
    system = fill(spec.default_system, date=spec.date)
    if system:
        lines += [f'SYSTEM """{system}"""', ""]
    lines += [f"PARAMETER stop {json.dumps(word, ensure_ascii=False)}" for word in stop_words(template)]
    return "\n".join(lines) + "\n"


def write_modelfile(template: Template, out_dir: Path, source: str = ".", note: str | None = None) -> Path:
    """Write `Modelfile` into `out_dir` (see `modelfile_text`)."""
    path = out_dir / "Modelfile"
    path.write_text(modelfile_text(template, source, note), encoding="utf-8")
    return path
