"""Chat-template layer: registry, encode_turns on the real Qwen tokenizer, thinking semantics, tool calls,
tokenizer mismatch detection and Jinja export."""

from __future__ import annotations

import pytest

from tuneforge.data.templates import (
    TemplateMismatchError,
    check_template_tokenizer,
    get_template,
    list_templates,
)
from tuneforge.errors import ConfigError

IM_END = 151645
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}}
MULTI = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "content": "22C"},
    {"role": "assistant", "content": "It is 22C."},
]
LF_NAMES = [
    "qwen",
    "qwen3",
    "qwen3_nothink",
    "deepseekr1",
    "deepseek3",
    "deepseek",
    "llama2",
    "llama3",
    "llama4",
    "mistral",
    "gemma",
    "gemma2",
    "gemma3",
    "glm4",
    "chatglm3",
    "baichuan2",
    "yi",
    "phi",
    "phi4",
    "phi4_mini",
    "internlm2",
    "smollm2",
    "chatml",
    "alpaca",
    "vicuna",
    "zephyr",
    "default",
    "empty",
    "cohere",
    "granite3",
]


def test_registry_has_lf_names() -> None:
    assert set(LF_NAMES) <= set(list_templates())
    assert len(list_templates()) >= 30


def test_unknown_template_names_close_matches() -> None:
    with pytest.raises(ConfigError, match="qwen3"):
        get_template("qwen_3")


@pytest.mark.parametrize("name", ["qwen", "qwen3", "qwen3_nothink"])
def test_encode_turns_concatenates_to_rendered_text(qwen_tokenizer, name: str) -> None:
    template = get_template(name)
    pairs = template.encode_turns(qwen_tokenizer, MULTI, system="Be brief.", tools=TOOLS)
    assert len(pairs) == 3
    joined = [i for prompt, response in pairs for i in prompt + response]
    text = template.render(MULTI, system="Be brief.", tools=TOOLS).removesuffix("\n")
    assert joined == qwen_tokenizer.encode(text, add_special_tokens=False)
    for _prompt, response in pairs:
        assert response[-1] == IM_END
    assert qwen_tokenizer.decode(pairs[0][1]) == "Hello!<|im_end|>"


def test_encode_prompt_ends_with_generation_prompt(qwen_tokenizer) -> None:
    ids = get_template("qwen").encode_prompt(qwen_tokenizer, MULTI[:1])
    assert qwen_tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    assert get_template("qwen").stop_token_ids(qwen_tokenizer)[0] == IM_END


def _response_text(tokenizer, template, messages) -> tuple[str, str]:
    prompt, response = template.encode_turns(tokenizer, messages)[-1]
    return tokenizer.decode(prompt), tokenizer.decode(response)


def test_qwen3_thinking_semantics(qwen_tokenizer) -> None:
    """LF semantics: True trains the empty block, False/None put it in the prompt; False drops reasoning."""
    plain = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    on = _response_text(qwen_tokenizer, get_template("qwen3", enable_thinking=True), plain)
    off = _response_text(qwen_tokenizer, get_template("qwen3", enable_thinking=False), plain)
    auto = _response_text(qwen_tokenizer, get_template("qwen3", enable_thinking=None), plain)
    assert on[1].startswith("<think>\n\n</think>\n\n4")
    assert off[0].endswith("<think>\n\n</think>\n\n") and off[1] == "4<|im_end|>"
    assert auto == off
    reasoned = [plain[0], {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}]
    assert _response_text(qwen_tokenizer, get_template("qwen3", enable_thinking=None), reasoned)[1].startswith(
        "<think>\nadd\n</think>"
    )
    assert "add" not in get_template("qwen3", enable_thinking=False).render(reasoned)
    gen = {
        flag: get_template("qwen3", enable_thinking=flag).render(plain[:1], add_generation_prompt=True)
        for flag in (True, False, None)
    }
    assert (
        gen[True].endswith("assistant\n") and gen[False].endswith("<think>\n\n</think>\n\n") and gen[None] == gen[False]
    )
    assert "<think>" not in get_template("qwen3_nothink").render(plain)


def test_qwen3_history_reasoning_dropped_before_last_query() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "reasoning_content": "old"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d", "reasoning_content": "new"},
    ]
    text = get_template("qwen3").render(messages)
    assert "old" not in text and "<think>\nnew\n</think>\n\nd" in text


def test_preserve_thinking_keeps_and_trains_every_turns_reasoning(qwen_tokenizer, caplog) -> None:
    """LLaMA-Factory's `preserve_thinking`: earlier turns keep their reasoning, on the trained side."""
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "reasoning_content": "old"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d", "reasoning_content": "new"},
    ]
    for name in ("qwen3", "deepseekr1"):
        template = get_template(name, preserve_thinking=True)
        trained = [s.text for s in template.segments(messages) if s.response]
        assert any("old" in text for text in trained) and any("new" in text for text in trained), name
    assert "old" not in get_template("deepseekr1").render(messages)
    assert "old" not in get_template("qwen3", enable_thinking=False, preserve_thinking=True).render(messages)
    with caplog.at_level("WARNING"):
        plain = get_template("qwen", preserve_thinking=True)
    assert "`preserve_thinking` has no effect: template 'qwen' writes no reasoning" in caplog.text
    assert plain.render(messages) == get_template("qwen").render(messages)
    with pytest.raises(ConfigError, match="preserve_thinking` needs a named `template:`"):
        get_template(None, qwen_tokenizer, preserve_thinking=True)


@pytest.mark.parametrize("name", ["qwen", "qwen3", "llama3", "deepseekr1", "granite4", "phi4_mini", "mistral"])
def test_tool_call_round_trip(name: str) -> None:
    template = get_template(name)
    text = template.tool_format.render_calls("", [CALL])
    content, calls = template.extract_tool_calls(text)
    assert content == ""
    assert calls == [CALL]


def test_hermes_style_extraction_keeps_content_and_several_calls() -> None:
    template = get_template("qwen")
    second = {"type": "function", "function": {"name": "get_time", "arguments": {"tz": {"name": "UTC"}}}}
    text = template.tool_format.render_calls("Let me check.", [CALL, second])
    assert template.extract_tool_calls(text) == ("Let me check.", [CALL, second])
    assert template.extract_tool_calls("no calls here") == ("no calls here", [])


def test_split_reasoning() -> None:
    assert get_template("qwen3").split_reasoning("<think>\nhmm\n</think>\n\nAnswer") == ("hmm", "Answer")
    assert get_template("qwen").split_reasoning("Answer") == ("", "Answer")


def test_llama3_on_qwen_tokenizer_raises_naming_tokens_and_suggesting_qwen(qwen_tokenizer) -> None:
    with pytest.raises(TemplateMismatchError) as info:
        check_template_tokenizer(get_template("llama3"), qwen_tokenizer)
    message = str(info.value)
    assert "<|start_header_id|>" in message and "<|eot_id|>" in message and "'llama3'" in message
    assert "`template: qwen" in message
    assert isinstance(info.value, ConfigError)
    warnings = check_template_tokenizer(get_template("llama3"), qwen_tokenizer, allow=True)
    assert any("<|start_header_id|>" in w for w in warnings)


def test_matching_template_has_no_token_warning_and_diff_is_reported(qwen_tokenizer) -> None:
    assert check_template_tokenizer(get_template("qwen"), qwen_tokenizer) == []
    warnings = check_template_tokenizer(get_template("qwen3_nothink"), qwen_tokenizer)
    assert len(warnings) == 1 and "renders differently" in warnings[0] and "You are Qwen" in warnings[0]


def test_tokenizer_template_wraps_own_jinja(qwen_tokenizer) -> None:
    template = get_template(None, qwen_tokenizer)
    named = get_template("qwen")
    messages = [*MULTI[:2], {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]
    assert template.render(messages) == named.render(messages)
    assert template.encode_turns(qwen_tokenizer, messages) == named.encode_turns(qwen_tokenizer, messages)


def test_tokenizer_without_chat_template_is_a_clear_error() -> None:
    class Bare:
        chat_template = None

    with pytest.raises(ConfigError, match="no chat_template"):
        get_template(None, Bare())


@pytest.mark.parametrize("name", [n for n in LF_NAMES if n not in ("qwen3", "deepseekr1")])
def test_to_jinja_matches_render(name: str) -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    template = get_template(name)
    for system in (None, "Be brief."):
        messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
        full = ([{"role": "system", "content": system}] if system else []) + messages
        out = render_jinja_template([full], chat_template=template.to_jinja())
        assert out[0][0] == template.render(messages, system=system)


class _Tok:
    """Just the bos/eos strings a tokenizer would fill into templates that leave them empty."""

    bos_token = "<s>"
    eos_token = "</s>"


_PIN_MESSAGES = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
# Templates written without an official fixture: their text for one exchange with a system prompt is pinned here,
# so any change to the records is visible in review.
PINNED = {
    "internlm2": "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\nHello!<|im_end|>\n",
    "vicuna": "Be brief. USER: Hi ASSISTANT:Hello!</s>",
    "zephyr": "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n",
    "default": "System: Be brief.</s>\nHuman: Hi</s>\nAssistant:Hello!</s>\n",
    "alpaca": "Be brief.### Instruction:\nHi\n\n### Response:\nHello!</s>\n\n",
    "baichuan2": "Be brief.<reserved_106>Hi<reserved_107>Hello!",
    "cohere": "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Be brief.<|END_OF_TURN_TOKEN|>"
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    "Hello!<|END_OF_TURN_TOKEN|>",
    "llama4": "<|begin_of_text|><|header_start|>system<|header_end|>\n\nBe brief.<|eot|>"
    "<|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\nHello!<|eot|>",
    "phi4": "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|>"
    "<|im_start|>assistant<|im_sep|>Hello!<|im_end|>",
}
PINNED_GEN = {
    "internlm2": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "vicuna": "USER: Hi ASSISTANT:",
    "zephyr": "<|user|>\nHi</s>\n<|assistant|>\n",
    "default": "Human: Hi</s>\nAssistant:",
    "alpaca": "### Instruction:\nHi\n\n### Response:\n",
    "baichuan2": "<reserved_106>Hi<reserved_107>",
    "cohere": "<|USER_TOKEN|>Hi<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    "llama4": "<|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\n",
    "phi4": "<|im_start|>user<|im_sep|>Hi<|im_end|><|im_start|>assistant<|im_sep|>",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_templates_without_fixture_render_pinned_text(name: str) -> None:
    template = get_template(name, _Tok())
    assert template.render(_PIN_MESSAGES, system="Be brief.") == PINNED[name]
    assert template.render(_PIN_MESSAGES[:1], add_generation_prompt=True).endswith(PINNED_GEN[name])


def test_unknown_template_error_points_to_the_cli_listing() -> None:
    with pytest.raises(ConfigError, match="tuneforge data templates"):
        get_template("no_such_template")


def test_main_families_have_descriptions() -> None:
    from tuneforge.data.templates import get_spec

    for name in ("qwen", "qwen3", "llama3", "mistral", "gemma", "phi", "glm4", "deepseekr1", "gpt_oss", "smollm3"):
        assert get_spec(name).description, name


def test_glm_xml_tool_arguments_and_mistral_small_ids() -> None:
    call = {"id": "abcdefghi", "type": "function", "function": {"name": "f", "arguments": {"a": "x", "n": [1]}}}
    glm = get_template("glm46").tool_format.render_calls("", [call])
    expected = "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>x</arg_value>\n"
    expected += "<arg_key>n</arg_key>\n<arg_value>[1]</arg_value>\n</tool_call>"
    assert glm == expected
    assert get_template("mistral_small32").tool_format.render_calls("", [call]) == (
        '[TOOL_CALLS]f[CALL_ID]abcdefghi[ARGS]{"a": "x", "n": [1]}'
    )


SCHEMAS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"type": "string"}, "days": {"type": "array"}},
            },
        },
    }
]


@pytest.mark.parametrize(
    ("name", "keeps_content"),
    [
        ("glm4_moe", True),
        ("glm46", True),
        ("glm47", True),
        ("mistral_small32", False),
        ("command_r_tools", True),
        ("command_r7b", True),
        ("qwen3", True),
    ],
)
def test_extract_round_trips_the_rendered_calls_turn(name: str, keeps_content: bool) -> None:
    """The response text `render` writes for a calls turn parses back to the same calls (and content)."""
    calls = [
        {"id": "abcdefghi", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}
        for ARGS in ({"city": "Paris", "zip": "75001", "days": [1, 2]}, {"city": "Lyon"})
    ]
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
    ]
    template = get_template(name)
    response = [s.text for s in template.segments(messages, tools=SCHEMAS) if s.response]
    assert len(response) == 1
    _reasoning, answer = template.split_reasoning(response[0])  # thinking families: the empty block first
    content, parsed = template.extract_tool_calls(answer, tools=SCHEMAS)
    if template.tool_format.call.count("{id}") == 0:
        calls = [{k: v for k, v in call.items() if k != "id"} for call in calls]
    assert parsed == calls  # "75001" stays a string for GLM because the schema says so
    assert content == ("Checking." if keeps_content else "")


def test_glm_values_without_schema_decode_json_and_keep_plain_text() -> None:
    text = "<tool_call>f<arg_key>n</arg_key><arg_value>3</arg_value>"
    text += "<arg_key>s</arg_key><arg_value>hi</arg_value></tool_call>"
    assert get_template("glm47").extract_tool_calls(text)[1][0]["function"]["arguments"] == {"n": 3, "s": "hi"}


@pytest.mark.parametrize("name", ["gpt_oss", "gemma4", "smollm3"])
def test_templates_without_tool_support_raise_instead_of_dropping(name: str) -> None:
    template = get_template(name)
    plain = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    with pytest.raises(ConfigError, match=rf"'{name}' cannot render tool schemas"):
        template.render(plain, tools=TOOLS)
    with pytest.raises(ConfigError, match="assistant tool calls, tool results"):
        template.render(MULTI)
    assert template.render(plain)  # plain conversations still render


def test_merged_system_templates_put_tools_in_the_first_user_turn() -> None:
    text = get_template("gemma").render([{"role": "user", "content": "Hi"}], system="Be brief.", tools=TOOLS)
    assert "<start_of_turn>user\nBe brief.\n\n# Tools" in text and '"name": "get_weather"' in text


def test_prefix_system_templates_list_tools_with_the_system_text() -> None:
    text = get_template("deepseek3").render([{"role": "user", "content": "Hi"}], system="Be brief.", tools=TOOLS)
    assert 'Be brief.\n\n{"type": "function", "function": {"name": "get_weather"' in text


def test_tools_that_cannot_be_placed_raise() -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    with pytest.raises(ConfigError, match="tool schemas would not appear"):
        get_template("mistral_nemo").render(messages, tools=TOOLS)  # its system text only joins a final user turn


def test_command_r7b_numbers_calls_across_the_conversation() -> None:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    turn = [{"role": "assistant", "content": "", "tool_calls": [call, call]}, *[{"role": "tool", "content": "x"}] * 2]
    text = get_template("command_r7b").render([{"role": "user", "content": "Hi"}, *turn, *turn])
    assert [text.count(f'"tool_call_id": "{i}"') for i in range(5)] == [2, 2, 2, 2, 0]


def test_python_type_names_for_hermes_and_cohere() -> None:
    from tuneforge.data.templates.tools import python_type

    array = {"type": "array", "items": {"type": "integer"}}
    assert (python_type(array), python_type(array, typing_names=True)) == ("list[int]", "List[int]")
    assert (python_type({"type": "object"}), python_type({"type": "object"}, True)) == ("dict", "Dict[str, Any]")
