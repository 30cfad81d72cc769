"""Fidelity: every official chat template in ../shared/fixtures renders exactly like its tuneforge template.

The official Jinja is rendered the way transformers does it (`render_jinja_template`, with `strftime_now` pinned
to 2024-07-26 so date-stamped system prompts are reproducible); ours goes through `Template.render` with the
system prompt passed separately, as the data converters do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from tuneforge.data.templates import get_template

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"
FIXED_NOW = datetime(2024, 7, 26, 12, 0, 0)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        },
    }
]
RICH_TOOLS = [
    *TOOLS,
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for"},
                    # no array: Command-R+'s `json_spec.items` reads dict.items, so arrays come out List[Union[]]
                    "news_only": {"type": "boolean", "description": "Only news sites"},
                    "limit": {"type": "integer", "description": "Most results"},
                },
                "required": ["query"],
            },
        },
    },
]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
SEARCH = {"type": "function", "function": {"name": "search", "arguments": {"query": "news", "news_only": True}}}
CALL_ID = {**CALL, "id": "call12345"}  # Mistral-Small needs 9-character call ids
SYSTEM = "You are a terse assistant."


def _u(text: str) -> dict:
    return {"role": "user", "content": text}


def _a(text: str, **extra) -> dict:
    return {"role": "assistant", "content": text, **extra}


# name -> (system, messages, tools, add_generation_prompt)
CASES = {
    "gen": (None, [_u("Hi there")], None, True),
    "system": (SYSTEM, [_u("Hi"), _a("Hello! How can I help?")], None, False),
    "multi": (None, [_u("Hi"), _a("Hello!"), _u("What is 2+2?"), _a("4")], None, False),
    "system_multi_gen": (SYSTEM, [_u("Hi"), _a("Hello!"), _u("What is 2+2?")], None, True),
    "tools": (
        None,
        [_u("Weather in Paris?"), _a("", tool_calls=[CALL]), {"role": "tool", "content": "22C"}, _a("It is 22C.")],
        TOOLS,
        False,
    ),
    "tools_system_gen": (SYSTEM, [_u("Weather in Paris?")], TOOLS, True),
    "tools_no_content": (
        None,
        [_u("Weather in Paris?"), _a(None, tool_calls=[CALL]), {"role": "tool", "content": "22C"}, _a("It is 22C.")],
        TOOLS,
        False,
    ),
    "tools_ids": (
        None,
        [
            _u("Weather in Paris?"),
            _a("", tool_calls=[CALL_ID]),
            {"role": "tool", "content": "22C", "tool_call_id": "call12345"},
            _a("It is 22C."),
        ],
        TOOLS,
        False,
    ),
    "tools_rich": (
        SYSTEM,
        [
            _u("Weather in Paris, and news?"),
            _a("", tool_calls=[{**CALL, "id": "call00001"}, {**SEARCH, "id": "call00002"}]),
            {"role": "tool", "content": "22C", "tool_call_id": "call00001"},
            {"role": "tool", "content": "Nothing new.", "tool_call_id": "call00002"},
            _a("22C and no news."),
        ],
        RICH_TOOLS,
        False,
    ),
    "reasoning": (None, [_u("2+2?"), _a("4", reasoning_content="Add two and two.")], None, False),
    "reasoning_multi": (
        None,
        [_u("1+1?"), _a("2", reasoning_content="One plus one."), _u("2+2?"), _a("4", reasoning_content="Sum.")],
        None,
        False,
    ),
}
PLAIN = ("gen", "system", "multi", "system_multi_gen")
TOOL_CASES = ("tools", "tools_system_gen", "tools_no_content")
REASONING = ("reasoning", "reasoning_multi")
NO_SYSTEM = ("gen", "multi")


@dataclass
class Fixture:
    """One official template, the tuneforge template that must reproduce it and the cases it supports."""

    path: str
    template: str
    cases: tuple[str, ...] = PLAIN
    bos: str = ""
    eos: str = ""
    kwargs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    xfail: dict = field(default_factory=dict)  # case -> why exact equality is impossible (template's own bug)


QWEN = {"eos": "<|im_end|>"}
DS = {"bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>"}
L3 = {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "kwargs": {"date_string": "26 Jul 2024"}}
MISTRAL = {"bos": "<s>", "eos": "</s>"}
CT = "chat_templates/"
V25_BUG = dict.fromkeys(
    ("system", "system_multi_gen"),
    "DeepSeek-V2.5's single-line template leaks 8 indentation spaces before BOS when a system message exists "
    "(`{% set ns.system_prompt %}` sits outside any whitespace control); nobody trains on that",
)
HERMES = {"bos": "<|begin_of_text|>", "eos": "<|im_end|>"}
NOTHINK = {"enable_thinking": False}
THINK = {"enable_thinking": True}
SMALL = (*PLAIN, "tools_system_gen", "tools_ids", "tools_rich")
GLM = (*PLAIN, "tools", "tools_system_gen", "tools_rich", *REASONING)
PHI4_BUG = dict.fromkeys(
    PLAIN,
    "llama.cpp's Phi-4-mini template iterates `tools` whenever it is defined, and transformers always passes "
    "tools=None, so it raises TypeError on any conversation without tools",
)
COHERE = {"bos": "<BOS_TOKEN>", "eos": "<|END_OF_TURN_TOKEN|>"}
R_CASES = (*TOOL_CASES, "tools_ids", "tools_rich")
R7B_CASES = (*PLAIN, *TOOL_CASES, "tools_ids", "tools_rich")
R_NONE = {
    "tools_no_content": "Command-R+'s tool_use template writes `message.content|trim` for a calls turn whenever "
    "the key exists, so content None renders as the text 'None' before `Action:`"
}
FIDELITY = [
    Fixture(CT + "Qwen-Qwen2.5-7B-Instruct.jinja", "qwen", (*PLAIN, "tools", "tools_system_gen", "tools_rich"), **QWEN),
    Fixture(CT + "Qwen-Qwen2-7B-Instruct.jinja", "qwen2", PLAIN, **QWEN),
    Fixture(
        CT + "Qwen-Qwen3-0.6B.jinja",
        "qwen3",
        (*PLAIN, "tools", "tools_system_gen", "tools_rich", "reasoning", "reasoning_multi"),
        **QWEN,
    ),
    Fixture(
        CT + "Qwen-Qwen3-0.6B.jinja",
        "qwen3",
        PLAIN,
        kwargs={"enable_thinking": False},
        options={"enable_thinking": False},
        **QWEN,
    ),
    Fixture("models/qwen3-14b-mlx-4bit/tokenizer_config.json", "qwen3", (*PLAIN, "tools"), **QWEN),
    Fixture(CT + "Qwen-QwQ-32B.jinja", "qwq", (*PLAIN, "tools", "tools_system_gen", "tools_rich"), **QWEN),
    Fixture(CT + "Qwen3-Coder.jinja", "qwen3_coder", PLAIN, **QWEN),
    Fixture(CT + "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseekr1", PLAIN, **DS),
    Fixture(CT + "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "deepseekr1", PLAIN, **DS),
    Fixture("models/deepseek-r1-distill-qwen-32b/tokenizer_config.json", "deepseek3", PLAIN, **DS),
    Fixture(CT + "deepseek-ai-DeepSeek-V2.5.jinja", "deepseek3", PLAIN, xfail=V25_BUG, **DS),
    Fixture(CT + "deepseek-ai-DeepSeek-V3.1.jinja", "deepseekv31", PLAIN, options={"enable_thinking": False}, **DS),
    Fixture(CT + "meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3", (*PLAIN, "tools", "tools_system_gen"), **L3),
    Fixture("models/llama-3.2-3b-instruct/chat_template.llama-cpp-fixture.jinja", "llama3", PLAIN, **L3),
    Fixture(CT + "meta-llama-Llama-3.3-70B-Instruct.jinja", "llama3", (*PLAIN, "tools"), **L3),
    Fixture("models/llama-3.3-70b-instruct/chat_template.llama-cpp-fixture.jinja", "llama3", PLAIN, **L3),
    Fixture(CT + "google-gemma-2-2b-it.jinja", "gemma2", NO_SYSTEM, bos="<bos>", eos="<eos>"),
    Fixture("models/gemma-2-2b-it/chat_template.llama-cpp-fixture.jinja", "gemma2", NO_SYSTEM, bos="<bos>"),
    Fixture(CT + "microsoft-Phi-3-mini-4k-instruct.jinja", "phi", PLAIN, eos="<|endoftext|>"),
    Fixture(CT + "microsoft-Phi-3.5-mini-instruct.jinja", "phi", PLAIN, eos="<|endoftext|>"),
    Fixture("models/phi-3.5-mini-instruct/chat_template.llama-cpp-fixture.jinja", "phi", PLAIN, eos="<|endoftext|>"),
    Fixture(CT + "mistralai-Mixtral-8x7B-Instruct-v0.1.jinja", "mixtral", PLAIN, **MISTRAL),
    Fixture(CT + "mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral_nemo", PLAIN, **MISTRAL),
    Fixture("models/mistral-7b-instruct-v0.3/tokenizer_config.json", "mistral", PLAIN, **MISTRAL),
    Fixture(CT + "THUDM-chatglm3-6b.jinja", "chatglm3", PLAIN),
    Fixture("models/glm-4-9b-chat/tokenizer_config.json", "glm4", PLAIN),
    Fixture(CT + "ibm-granite-granite-3.3-2B-Instruct.jinja", "granite3", PLAIN, eos="<|end_of_text|>"),
    Fixture(
        CT + "ibm-granite-granite-4.0.jinja",
        "granite4",
        (*PLAIN, "tools", "tools_system_gen", "tools_rich"),
        eos="<|end_of_text|>",
    ),
    # SmolLM3's (Unsloth-edited) template drops tool schemas and calls; tuneforge raises instead (test_templates).
    Fixture(CT + "HuggingFaceTB-SmolLM3-3B.jinja", "smollm3", (*PLAIN, *REASONING), **QWEN),
    Fixture(
        CT + "HuggingFaceTB-SmolLM3-3B.jinja",
        "smollm3",
        PLAIN,
        kwargs={"enable_thinking": False},
        options={"enable_thinking": False},
        **QWEN,
    ),
    # The tool_use variants render only conversations that come with tools (HF picks them when tools are given).
    Fixture(CT + "NousResearch-Hermes-3-Llama-3.1-70B-tool_use.jinja", "hermes", (*TOOL_CASES, "tools_rich"), **HERMES),
    Fixture(CT + "NousResearchHermes-2-Pro-Llama-3-8B-tool_use.jinja", "hermes", (*TOOL_CASES, "tools_rich"), **HERMES),
    Fixture(
        CT + "llama-cpp-microsoft-Phi-4-mini-instruct.jinja",
        "phi4_mini",
        (*PLAIN, *TOOL_CASES, "tools_rich"),
        eos="<|endoftext|>",
        xfail=PHI4_BUG,
    ),
    Fixture(CT + "mistralai-Mistral-Small-3.1-24B-Instruct-2503.jinja", "mistral_small", SMALL, **MISTRAL),
    Fixture(CT + "Mistral-Small-3.2-24B-Instruct-2506.jinja", "mistral_small32", SMALL, **MISTRAL),
    Fixture(CT + "glm_4_5.jinja", "glm4_moe", GLM),
    Fixture(CT + "GLM-4.6.jinja", "glm46", GLM),
    Fixture(CT + "GLM-4.7-Flash.jinja", "glm47", GLM),
    Fixture(CT + "glm_4_5.jinja", "glm4_moe", PLAIN, kwargs=NOTHINK, options=NOTHINK),
    Fixture(CT + "GLM-4.6.jinja", "glm46", PLAIN, kwargs=NOTHINK, options=NOTHINK),
    Fixture(CT + "GLM-4.7-Flash.jinja", "glm47", PLAIN, kwargs=NOTHINK, options=NOTHINK),
    Fixture(CT + "google-gemma-4-31B-it.jinja", "gemma4", (*PLAIN, *REASONING), bos="<bos>", options=NOTHINK),
    Fixture(CT + "google-gemma-4-31B-it.jinja", "gemma4", (*PLAIN, *REASONING), bos="<bos>", kwargs=THINK),
    Fixture(CT + "openai-gpt-oss-120b.jinja", "gpt_oss", (*PLAIN, *REASONING)),
    # Command-R+'s tool_use template iterates `tools` unconditionally (no plain cases) and needs tools.
    Fixture(CT + "CohereForAI-c4ai-command-r-plus-tool_use.jinja", "command_r_tools", R_CASES, xfail=R_NONE, **COHERE),
    Fixture(CT + "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", "command_r7b", R7B_CASES, **COHERE),
]


def _official_text(path: Path) -> str:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))["chat_template"]
    return path.read_text(encoding="utf-8")


def render_official(template: str, fixture: Fixture, case: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Render one case through the official Jinja exactly as transformers does."""
    import transformers.utils.chat_template_utils as ctu

    class _Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_NOW

    monkeypatch.setattr(ctu, "datetime", _Clock)
    system, messages, tools, gen = CASES[case]
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    out = ctu.render_jinja_template(
        [messages],
        tools=tools,
        chat_template=template,
        add_generation_prompt=gen,
        bos_token=fixture.bos,
        eos_token=fixture.eos,
        **fixture.kwargs,
    )
    return out[0][0] if isinstance(out, tuple) else out[0]


def _ids() -> list:
    params = []
    for fixture in FIDELITY:
        for case in fixture.cases:
            label = f"{Path(fixture.path).stem if 'chat_templates' in fixture.path else fixture.path}"
            extra = "-nothink" if fixture.options.get("enable_thinking") is False else ""
            marks = [pytest.mark.xfail(reason=fixture.xfail[case], strict=True)] if case in fixture.xfail else []
            params.append(pytest.param(fixture, case, id=f"{label}{extra}-{fixture.template}-{case}", marks=marks))
    return params


@pytest.mark.parametrize(("fixture", "case"), _ids())
def test_official_template_fidelity(fixture: Fixture, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = FIXTURES / fixture.path
    if not path.is_file():
        pytest.skip(f"{path} is absent: fidelity tests need ../shared/fixtures beside the checkout")
    expected = render_official(_official_text(path), fixture, case, monkeypatch)
    template = get_template(fixture.template, **fixture.options)
    system, messages, tools, gen = CASES[case]
    assert template.render(messages, system=system, tools=tools, add_generation_prompt=gen) == expected


def test_every_fixture_has_a_fidelity_mapping() -> None:
    """Adding an official template to the fixtures without mapping it here must fail."""
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} is absent")
    official = {str(p.relative_to(FIXTURES)) for p in (FIXTURES / "chat_templates").glob("*.jinja")}
    official |= {str(p.relative_to(FIXTURES)) for p in (FIXTURES / "models").glob("*/*.jinja")}
    official |= {
        str(p.relative_to(FIXTURES))
        for p in (FIXTURES / "models").glob("*/tokenizer_config.json")
        if "chat_template" in json.loads(p.read_text(encoding="utf-8"))
    }
    mapped = {f.path for f in FIDELITY}
    assert sorted(official - mapped) == []
