"""Check that a chat template fits a tokenizer: special tokens exist, and the text agrees with its own Jinja."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tuneforge.data.templates.registry import get_spec, list_templates, template_for_config
from tuneforge.data.templates.template import Template
from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    from tuneforge.config.data import DataSection

logger = logging.getLogger(__name__)

_SAMPLE = [
    {"role": "user", "content": "Hello, who are you?"},
    {"role": "assistant", "content": "I am an assistant."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
]


class TemplateMismatchError(ConfigError):
    """The chat template uses special tokens this tokenizer does not have (set `allow_template_mismatch`)."""


def is_single_token(tokenizer: Any, text: str) -> bool:
    """Whether ``text`` encodes to exactly one token id."""
    return len(tokenizer.encode(text, add_special_tokens=False)) == 1


def matching_templates(tokenizer: Any) -> list[str]:
    """Registered templates whose special tokens are all single tokens of ``tokenizer``."""
    names = []
    for name in list_templates():
        tokens = get_spec(name).special_tokens
        if tokens and all(is_single_token(tokenizer, t) for t in tokens):
            names.append(name)
    return names


def checked_template(data: DataSection, tokenizer: Any) -> tuple[Template, list[str]]:
    """The template the config's `data` section asks for, checked against `tokenizer`: missing special tokens
    raise `TemplateMismatchError` (unless `allow_template_mismatch`); the warnings are logged and returned.
    The one place training, inference and export turn those keys into a Template."""
    template = template_for_config(data, tokenizer)
    warnings = check_template_tokenizer(template, tokenizer, allow=data.allow_template_mismatch)
    for warning in warnings:
        logger.warning("%s", warning)
    return template, warnings


def check_template_tokenizer(template: Template, tokenizer: Any, *, allow: bool = False) -> list[str]:
    """Return warnings about ``template`` on ``tokenizer``; raise ``TemplateMismatchError`` on missing tokens.

    Missing special tokens raise unless ``allow`` (config ``allow_template_mismatch: true``), which turns the
    error into a warning. When the tokenizer carries its own chat template and it renders a sample
    conversation differently, a warning describes the first difference.
    """
    warnings = []
    missing = [t for t in template.spec.special_tokens if not is_single_token(tokenizer, t)]
    if missing:
        message = _missing_message(template.name, missing, matching_templates(tokenizer))
        if not allow:
            raise TemplateMismatchError(message)
        warnings.append(message)
    diff = _jinja_difference(template, tokenizer)
    if diff:
        warnings.append(diff)
    return warnings


def _missing_message(name: str, missing: list[str], candidates: list[str]) -> str:
    tokens = ", ".join(missing)
    hint = (
        "use " + " or ".join(f"`template: {c}`" for c in candidates[:4])
        if candidates
        else "pick the template of the model family you are training"
    )
    return (
        f"template: {name!r} needs special tokens this tokenizer lacks as single tokens: {tokens}. "
        f"The model would learn them as plain text. Templates matching this tokenizer: {hint}; "
        "or set `allow_template_mismatch: true` to continue anyway."
    )


def _jinja_difference(template: Template, tokenizer: Any) -> str:
    if not getattr(tokenizer, "chat_template", None) or template.name == "tokenizer":
        return ""
    try:
        theirs = tokenizer.apply_chat_template(_SAMPLE, tokenize=False)
    except Exception as error:  # the tokenizer's own template may reject the sample
        return f"template: the tokenizer's own chat template could not render a sample conversation: {error}"
    ours = template.render(_SAMPLE)
    if ours == theirs:
        return ""
    at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
    return (
        f"template: {template.name!r} renders differently from the tokenizer's own chat template at character "
        f"{at}: ours {ours[max(0, at - 20) : at + 40]!r} vs tokenizer {theirs[max(0, at - 20) : at + 40]!r}"
    )
