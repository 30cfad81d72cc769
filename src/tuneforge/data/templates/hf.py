"""``template: null``: wrap a tokenizer's own Jinja chat template behind the ``Template`` interface.

Turn boundaries are found by rendering prefixes of the conversation: the text up to each assistant message
with the generation prompt is the prompt; the text after it up to the rendered assistant message is the
response. Rendering goes through ``tokenizer.apply_chat_template`` so the official template stays the single
source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.data.templates.record import TemplateSpec
from tuneforge.data.templates.render import Segment
from tuneforge.data.templates.template import Template
from tuneforge.data.templates.tools import ToolFormat, wrap_tool
from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class TokenizerTemplate(Template):
    """A ``Template`` whose text comes from the tokenizer's Jinja chat template."""

    tokenizer: Any = None
    default_system: str | None = None

    def _apply(self, messages: list[dict], tools: list[dict] | None, add_generation_prompt: bool) -> str:
        kwargs = {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}
        tools = [wrap_tool(t) for t in tools] if tools else tools  # one schema form, as the named templates
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )

    def _with_system(self, messages: list[dict], system: str | None) -> list[dict]:
        system = self.default_system if system is None else system
        if system is None or (messages and messages[0]["role"] == "system"):
            return list(messages)
        return [{"role": "system", "content": system}, *messages]

    def segments(
        self,
        messages: list[dict],
        system: str | None = None,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = False,
    ) -> list[Segment]:
        """Segments found by rendering prefixes; raises when the template rewrites earlier turns."""
        messages = self._with_system(messages, system)
        out: list[Segment] = []
        done = ""
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self._apply(messages[:index], tools, add_generation_prompt=True)
            full = self._apply(messages[: index + 1], tools, add_generation_prompt=False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise ConfigError(
                    f"template: the tokenizer's chat template does not render turn {index} as a continuation "
                    "of the earlier turns (it rewrites history, e.g. strips reasoning); pick a named `template:`"
                )
            end = _response_end(full, prompt, message.get("content") or "")
            out += [Segment(prompt[len(done) :]), Segment(full[len(prompt) : end], response=True)]
            done = full[:end]
        final = self._apply(messages, tools, add_generation_prompt)
        if final[len(done) :]:
            out.append(Segment(final[len(done) :]))
        return out


def _response_end(full: str, prompt: str, content: str) -> int:
    """End of the response: after the content and the end-of-turn marker, before trailing whitespace."""
    at = full.find(content, len(prompt)) if content else len(prompt)
    return len(full.rstrip("\n")) if at < 0 else max(len(full.rstrip("\n")), at + len(content))


def tokenizer_template(
    tokenizer: Any, *, enable_thinking: bool | None = True, default_system: str | None = None
) -> Template:
    """A ``Template`` rendering through ``tokenizer.apply_chat_template``."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "template: not set and the tokenizer has no chat_template; set `template:` to a registered name "
            "(see `tuneforge data templates`), e.g. `template: qwen3`"
        )
    spec = TemplateSpec(name="tokenizer", eos=tokenizer.eos_token or "", bos=tokenizer.bos_token or "")
    return TokenizerTemplate(
        spec, ToolFormat(name="qwen"), enable_thinking, tokenizer=tokenizer, default_system=default_system
    )


__all__ = ["TokenizerTemplate", "tokenizer_template"]
