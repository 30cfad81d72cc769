"""``Template``: one chat template bound to its options, with render / encode / parse helpers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tuneforge.data.templates.record import TemplateSpec
from tuneforge.data.templates.render import Segment, render_segments, split_reasoning
from tuneforge.data.templates.tools import ToolFormat

Pair = tuple[list[int], list[int]]
ENCODING = "chunks-1"  # how turns become ids (part of the data cache key): change it when `encode_segments` changes


@dataclass(frozen=True)
class Template:
    """A chat template record plus its options; see the package docstring for the thinking semantics."""

    spec: TemplateSpec
    tool_format: ToolFormat
    enable_thinking: bool | None = True

    @property
    def name(self) -> str:
        """The registered template name."""
        return self.spec.name

    @property
    def stop_words(self) -> list[str]:
        """Strings that end an assistant turn (besides the tokenizer's eos)."""
        return list(self.spec.stop_words)

    def with_options(self, **changes: Any) -> Template:
        """A copy whose record fields are changed, e.g. ``with_options(date="01 Jan 2025")``."""
        return replace(self, spec=replace(self.spec, **changes))

    def segments(
        self,
        messages: list[dict],
        system: str | None = None,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = False,
    ) -> list[Segment]:
        """The rendered conversation as segments marked prompt or response."""
        return render_segments(
            self.spec, self.tool_format, messages, system, tools, add_generation_prompt, self.enable_thinking
        )

    def render(
        self,
        messages: list[dict],
        system: str | None = None,
        tools: list[dict] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        """The full conversation text, byte-identical to the family's official chat template."""
        return "".join(s.text for s in self.segments(messages, system, tools, add_generation_prompt))

    def encode_turns(
        self, tokenizer: Any, messages: list[dict], system: str | None = None, tools: list[dict] | None = None
    ) -> list[Pair]:
        """One (prompt_ids, response_ids) pair per assistant turn.

        Each prompt and each response is tokenized on its own (see ``encode_segments``), so every response
        starts at a token boundary and the ids before it equal ``encode_prompt`` of the conversation so far.
        Response ids end with the end-of-turn token(s); the separator after the final turn belongs to no pair.
        Templates with ``efficient_eos`` (ChatGLM, Baichuan) get no eos here: the data stages add it after
        the final response and as the label after each earlier one, as LLaMA-Factory does.
        """
        segments = self.segments(messages, system, tools)
        while segments and not segments[-1].response:
            segments.pop()
        return encode_segments(tokenizer, segments)

    def encode_prompt(
        self, tokenizer: Any, messages: list[dict], system: str | None = None, tools: list[dict] | None = None
    ) -> list[int]:
        """Token ids of the conversation followed by the generation prompt, for inference.

        Tokenized exactly as training tokenizes the same turns (earlier responses on their own), so a model
        sees at inference the ids it was trained on.
        """
        texts, _ = side_chunks(self.segments(messages, system, tools, add_generation_prompt=True))
        return [token for text in texts for token in tokenizer.encode(text, add_special_tokens=False)]

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        """Ids of the stop words that are single tokens, plus the tokenizer's eos id."""
        ids = []
        for word in self.stop_words:
            token_ids = tokenizer.encode(word, add_special_tokens=False)
            if len(token_ids) == 1:
                ids.append(token_ids[0])
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        return list(dict.fromkeys(ids))

    def extract_tool_calls(self, text: str, tools: list[dict] | None = None) -> tuple[str, list[dict]]:
        """Parse the model's tool-call output: (remaining content, OpenAI-style tool calls).

        ``tools`` (the schemas offered) keeps string parameters as strings in formats that write arguments
        one by one (GLM ``<arg_value>``); calls carry their ``id`` when the format writes one (Mistral-Small-3.2).
        """
        return self.tool_format.extract(text, tools)

    def split_reasoning(self, text: str) -> tuple[str, str]:
        """Split generated text into (reasoning, content); reasoning is "" when the template has none."""
        return split_reasoning(text, self.spec.thinking)

    def to_jinja(self) -> str:
        """A Jinja chat template equivalent to this record for plain conversations (see ``jinja.py``)."""
        from tuneforge.data.templates.jinja import spec_to_jinja

        return spec_to_jinja(self.spec)


def side_chunks(segments: list[Segment]) -> tuple[list[str], list[bool]]:
    """The rendered text cut where it switches between prompt and response: (texts, is_response flags)."""
    texts: list[str] = []
    responses: list[bool] = []
    for segment in segments:
        if responses and responses[-1] == segment.response:
            texts[-1] += segment.text
        else:
            texts.append(segment.text)
            responses.append(segment.response)
    return texts, responses


def encode_segments(tokenizer: Any, segments: list[Segment]) -> list[Pair]:
    """Tokenize each prompt chunk and each response chunk on its own and group them into pairs.

    This is LLaMA-Factory's rule: a response never shares a token with the prompt before it (with BPE,
    ``"Assistant:" + "The"`` would otherwise merge into ``":The"`` and the answer's first word would be masked),
    and the prompt's ids are what inference builds from the same text.
    """
    texts, responses = side_chunks(segments)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    ids: list[int] = []
    cuts: list[int] = []
    for chunk in encoded:
        ids += chunk
        cuts.append(len(ids))
    return group_pairs(ids, cuts, responses)


def group_pairs(ids: list[int], cuts: list[int], responses: list[bool]) -> list[Pair]:
    """Group token ids into (prompt, response) pairs; span i ends at token `cuts[i]` and is a response
    when `responses[i]`."""
    pairs: list[Pair] = []
    prompt: list[int] = []
    response: list[int] = []
    cursor = 0
    for stop, is_response in zip(cuts, responses, strict=True):
        chunk = ids[cursor:stop]
        cursor = max(cursor, stop)
        if is_response:
            response += chunk
            continue
        if response:
            pairs.append((prompt, response))
            prompt, response = [], []
        prompt += chunk
    if response:
        pairs.append((prompt, response))
    return pairs
