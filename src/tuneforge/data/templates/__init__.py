"""Chat templates as data, with LLaMA-Factory-compatible names.

Records live in ``data/*.yaml`` (one per name, a file per family); ``render.py`` renders any record generically and
``tools.py`` holds the tool-call formats. Input is the canonical conversation: ``messages`` with roles
``user`` / ``assistant`` / ``tool`` (assistant messages may carry OpenAI-style ``tool_calls`` and
``reasoning_content``), plus ``system`` and ``tools`` (OpenAI tool schemas).

Thinking (``enable_thinking``, for records with a ``thinking`` block such as ``qwen3``), following LF 0.9.5:

- ``True`` (default): reasoning is kept where the official template keeps it (for qwen3: assistant turns after
  the last user message) and is trained; a final turn without reasoning gets the empty block
  ``<think>\\n\\n</think>\\n\\n`` *in the response*, so the model learns when it skips thinking. The generation
  prompt is left open (the model decides whether to think).
- ``False``: all reasoning is dropped; the empty block is placed *in the prompt* (not trained) and the
  generation prompt ends with it, so the model answers without thinking (official ``enable_thinking=False``).
- ``None``: reasoning that is present is kept and trained; where it is missing the empty block goes in the
  prompt; the generation prompt ends with the empty block, as LF does.

``qwen3_nothink`` has no thinking block at all. Rendered text is identical to the official template for
True/None; only which side of the prompt/response boundary the empty block sits on differs.
"""

from tuneforge.data.templates.mismatch import TemplateMismatchError, check_template_tokenizer, checked_template
from tuneforge.data.templates.registry import (
    get_spec,
    get_template,
    list_templates,
    list_tool_formats,
    template_for_config,
)
from tuneforge.data.templates.render import Segment
from tuneforge.data.templates.template import Template

__all__ = [
    "Segment",
    "Template",
    "TemplateMismatchError",
    "check_template_tokenizer",
    "checked_template",
    "get_spec",
    "get_template",
    "list_templates",
    "list_tool_formats",
    "template_for_config",
]
