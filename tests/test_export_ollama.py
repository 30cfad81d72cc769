"""Ollama Modelfile: its TEMPLATE, run by Go's text/template, renders what tuneforge's template renders."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tuneforge.data.templates import get_template, list_templates
from tuneforge.data.templates.tools import fill, to_json
from tuneforge.errors import ConfigError
from tuneforge.export.ollama import (
    go_template,
    modelfile_text,
    stop_words,
    unsupported_fields,
    unsupported_tool_fields,
)

GO_SOURCE = Path(__file__).resolve().parents[1] / "scripts" / "ollama_render.go"

PLAIN = [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ],
    [
        {"role": "system", "content": "You speak French."},
        {"role": "user", "content": "Bonjour"},
        {"role": "assistant", "content": "Salut !"},
        {"role": "user", "content": "Ça va ?"},
    ],
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
WITH_TOOLS = [
    [{"role": "user", "content": "Weather in Paris?"}],
    [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": "sunny"},
    ],
    [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
    ],
]
THINKING = [
    [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
        {"role": "user", "content": "3+3?"},
    ],
]


def _go_message(message: dict) -> dict:
    calls = [
        {"Function": {"Name": c["function"]["name"], "Arguments": to_json(c["function"]["arguments"])}}
        for c in message.get("tool_calls") or []
    ]
    return {
        "role": message["role"],
        "content": message.get("content") or "",
        "thinking": message.get("reasoning_content") or "",
        "tool_calls": calls,
    }


def _case(template, messages: list[dict], tools: list[dict] | None, think: bool | None = None) -> dict:
    spec = template.spec
    return {
        "template": go_template(template),
        "messages": [_go_message(m) for m in messages],
        "tools": [to_json(t) for t in tools or []],
        "default_system": fill(spec.default_system, date=spec.date),
        "think": think,
    }


@pytest.fixture(scope="module")
def go_render(tmp_path_factory: pytest.TempPathFactory):
    """A function running the Go renderer on a list of cases (skips when Go is not installed)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go toolchain not installed (Debian: apt-get install golang-go); Modelfile check skipped")
    build = tmp_path_factory.mktemp("go_render")
    shutil.copy(GO_SOURCE, build / "main.go")
    (build / "go.mod").write_text("module ollamarender\n\ngo 1.18\n")
    subprocess.run([go, "build", "-o", "render", "."], cwd=build, check=True, capture_output=True, timeout=300)

    def run(cases: list[dict]) -> list[str]:
        result = subprocess.run(
            [str(build / "render")], input=json.dumps(cases), capture_output=True, text=True, check=True, timeout=60
        )
        return json.loads(result.stdout)

    return run


def _expected(template, messages: list[dict], tools: list[dict] | None) -> str:
    return template.render(messages, tools=tools, add_generation_prompt=messages[-1]["role"] != "assistant")


def _assert_go_matches(go_render, names: list[str], conversations: list, tools: list | None) -> None:
    """Every template in `names` renders every conversation through Go exactly as tuneforge renders it."""
    cases, expected, labels = [], [], []
    for name in names:
        template = get_template(name)
        for index, messages in enumerate(conversations):
            cases.append(_case(template, messages, tools))
            expected.append(_expected(template, messages, tools))
            labels.append(f"{name}#{index}")
    rendered = go_render(cases)
    mismatches = [label for label, got, want in zip(labels, rendered, expected, strict=True) if got != want]
    assert not mismatches, f"Go rendering differs for {mismatches}"


def test_every_template_plain_conversations_match_go(go_render) -> None:
    every = list_templates()
    names = [n for n in every if not unsupported_fields(get_template(n))]
    assert len(names) >= 0.8 * len(every), f"translated exactly: {len(names)} of {len(every)} templates"
    _assert_go_matches(go_render, names, PLAIN, None)


def _tool_templates() -> list[str]:
    """Templates whose record and tool format the Modelfile reproduces exactly and that accept tools."""
    names = []
    for name in list_templates():
        template = get_template(name)
        if unsupported_fields(template) or unsupported_tool_fields(template):
            continue
        try:
            template.render(WITH_TOOLS[-1], tools=TOOLS)
        except (ConfigError, ValueError):
            continue
        names.append(name)
    return names


def test_tool_conversations_match_go(go_render) -> None:
    names = _tool_templates()
    assert {"qwen", "qwen3", "mistral", "granite3"} <= set(names)
    _assert_go_matches(go_render, names, WITH_TOOLS, TOOLS)


@pytest.mark.parametrize("think", [None, False])
def test_thinking_history_and_switch_match_go(go_render, think: bool | None) -> None:
    template = get_template("qwen3", enable_thinking=think is not False)
    rendered = go_render([_case(template, m, None, think) for m in THINKING])
    assert rendered == [_expected(template, m, None) for m in THINKING]


@pytest.mark.parametrize("name", ["qwen3", "deepseekr1", "glm4_moe"])
def test_preserved_thinking_matches_go(go_render, name: str) -> None:
    """With `preserve_thinking` every earlier turn keeps its reasoning in the Modelfile as in training."""
    template = get_template(name, preserve_thinking=True)
    rendered = go_render([_case(template, m, None) for m in THINKING])
    assert rendered == [_expected(template, m, None) for m in THINKING]
    assert "Add them." in rendered[-1]


def test_final_assistant_message_is_left_open_for_continuation(go_render) -> None:
    template = get_template("qwen")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, I"}]
    (got,) = go_render([_case(template, messages, None)])
    assert got.endswith("<|im_start|>assistant\nHello, I")
    assert template.render(messages).startswith(got)


def test_modelfile_lines() -> None:
    template = get_template("qwen")
    text = modelfile_text(template, "./model-f16.gguf")
    assert text.startswith("FROM ./model-f16.gguf\n")
    assert 'SYSTEM """You are Qwen, created by Alibaba Cloud. You are a helpful assistant."""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'TEMPLATE """{{- $system := .System }}' in text
    assert stop_words(get_template("llama3")) == ["<|eot_id|>", "<|eom_id|>"]
