"""Tool formats against LLaMA-Factory 0.9.5's own tool utils, and round trips through every tool format.

The fixture (`scripts/lf_fixtures/encode_templates.py`) stores, for each LF tool format, its text for a fixed tool
list and fixed calls, and what LF's extractor read back from those calls. Formats named like LF's must write the
same text; reading calls back must give the calls, also where LF's extractor cannot read its own output (README
"Differences from LLaMA-Factory").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.data.templates.registry import get_tool_format, list_tool_formats

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "lf_template_ids.json").read_text(encoding="utf-8"))
LF_FORMATS = FIXTURE["tool_formats"]
# tuneforge formats that share an LF name but write other text (README's differences say why)
NOT_LF_TEXT = {
    "qwen": "the leading blank lines of LF's block are the template's tools_system joiner here",
    "mistral": "LF's calls are a bare JSON list (its templates write [TOOL_CALLS]); here the format writes it",
}
TOOLS = FIXTURE["cases"]["tools"]["tools"]
CALLS_LF = FIXTURE["tool_calls"]


def _openai(calls: list[dict]) -> list[dict]:
    return [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]


@pytest.mark.parametrize("name", sorted(set(LF_FORMATS) & set(list_tool_formats())))
def test_tool_format_writes_llamafactory_text(name: str) -> None:
    fmt, theirs = get_tool_format(name), LF_FORMATS[name]
    if name in NOT_LF_TEXT:
        texts = [fmt.render_tools(TOOLS) == theirs["tools"]]
        texts += [fmt.render_calls("", _openai(c)) == theirs["calls"][k].get("text") for k, c in CALLS_LF.items()]
        assert not all(texts), f"{name} now matches LF: drop it from NOT_LF_TEXT"
        return
    assert fmt.render_tools(TOOLS) == theirs["tools"]
    for key, calls in CALLS_LF.items():
        expected = theirs["calls"][key]
        if "refused" in expected:
            with pytest.raises(ValueError, match="exactly one tool call"):
                fmt.render_calls("", _openai(calls))
            continue
        text = fmt.render_calls("", _openai(calls))
        assert text == expected["text"], key
        content, read = fmt.extract(text, TOOLS)
        assert (content, read) == ("", _openai(calls)), key
        if not isinstance(expected["extracted"], str):  # LF read its own text back: the same calls
            assert [[c["function"]["name"], c["function"]["arguments"]] for c in read] == expected["extracted"]


def test_every_llamafactory_tool_format_exists() -> None:
    """LF 0.9.5's tool format names (llama3's text carries today's date, so the fixture leaves it out)."""
    assert set(LF_FORMATS) | {"llama3"} <= set(list_tool_formats())


CALLS = {
    "single": [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}],
    "parallel": [
        {"name": "get_weather", "arguments": {"city": "Rome", "days": 1}},
        {"name": "get_time", "arguments": {"zone": "CET"}},
    ],
    "values": [{"name": "get_weather", "arguments": {"city": "New York", "days": 10, "extra": [1, {"ok": True}]}}],
}
NO_ROUND_TRIP = {"none"}  # writes no calls


@pytest.mark.parametrize("name", sorted(set(list_tool_formats()) - NO_ROUND_TRIP))
@pytest.mark.parametrize("key", sorted(CALLS))
def test_tool_call_round_trip(name: str, key: str) -> None:
    """Format calls with a tool format, parse them back with the same record: the same calls."""
    fmt, calls = get_tool_format(name), _openai(CALLS[key])
    if fmt.single_call and len(calls) > 1:
        pytest.skip(f"{name} writes one call per message")
    text = fmt.render_calls("Let me check.", calls)
    content, read = fmt.extract(text, TOOLS)
    assert [c["function"] for c in read] == [c["function"] for c in calls], text
    assert content in ("Let me check.", "")  # formats that drop the content (keep_content: false) give ""


NEW_FORMATS = ["gemma4", "glm4", "glm4_moe", "lfm2", "ling", "minimax1", "minimax2", "qwen3_5", "seed_oss"]
LF_TEMPLATES = {"aeva", "bailing_v2", "glm4", "glm4_7", "glmz1", "lfm2", "minimax1", "minimax2", "seed_oss"}


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_config_validate_accepts_the_format_and_its_templates(fmt: str) -> None:
    from tuneforge.config.checks import check_consistency
    from tuneforge.config.loader import load_config

    base = {"model_name_or_path": "m", "stage": "sft", "dataset": "d", "output_dir": "o"}
    for template in sorted(LF_TEMPLATES):
        cfg = load_config({**base, "template": template, "tool_format": fmt})
        assert cfg.data.tool_format == fmt
        assert not [c for c in check_consistency(cfg) if "tool_format" in c[0] or "template" in c[0]]


@pytest.mark.parametrize("template", sorted(LF_TEMPLATES))
def test_templates_that_refused_tools_render_them(template: str) -> None:
    from tuneforge.data.templates import get_template

    tpl = get_template(template)
    call = {"type": "function", "function": {"name": "get_time", "arguments": {"zone": "CET"}}}
    messages = [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "12:00"},
    ]
    text = tpl.render(messages, tools=TOOLS, add_generation_prompt=True)
    assert tpl.tool_format.render_tools(TOOLS) in text and "12:00" in text
    assert tpl.extract_tool_calls(tpl.tool_format.render_calls("", [call]), TOOLS)[1] == [call]


@pytest.mark.parametrize("name", ["glm4_moe", "ling"])
def test_qwen_json_calls_are_read_as_llamafactory_reads_them(name: str) -> None:
    """LF's extractor for these formats is Qwen's: `<tool_call>` JSON is understood besides the format's own text."""
    call = _openai(CALLS["single"])
    text = "Sure.\n" + get_tool_format("qwen").render_calls("", call)
    assert get_tool_format(name).extract(text, TOOLS) == ("Sure.", call)
