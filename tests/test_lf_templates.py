"""tuneforge's sft encoding of a few fixed text conversations equals LLaMA-Factory 0.9.5's for every LF template
(multimodal ones included: their text)
(fixture written by `scripts/lf_fixtures/encode_templates.py` with LF's template and supervised processor, the same
Qwen2 tokenizer, and the tokens LF added to it for that template).

Allowed, as README "Differences from LLaMA-Factory" lists: LF's trained separator after an end-of-turn token is
prompt-side (untrained) here; and the same text may split into other ids where tuneforge tokenizes a prompt chunk
(system + first user turn, or an empty thinking block + answer) as one string. Templates in DIFFERS render other text
(most follow their model's official chat template, checked by the fidelity tests); the test pins that they still do.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import pytest

from test_data_boundaries import _example, _process
from tuneforge.data.convert import parse_function_call
from tuneforge.data.process import IGNORE
from tuneforge.data.templates import get_template
from tuneforge.errors import ConfigError

FIXTURE = Path(__file__).parent / "fixtures" / "lf_template_ids.json"
DATA = json.loads(FIXTURE.read_text(encoding="utf-8"))
OFFICIAL = "follows the model's official chat template (fidelity tests) and its own bos/eos strings"
DIFFERS: dict[str, str] = {
    **dict.fromkeys(
        [
            "chatglm3",
            "cohere",
            "deepseek",
            "deepseek3",
            "deepseekr1",
            "gemma",
            "gemma2",
            "gemma3",
            "gemma4",
            "glm4_moe",
            "gpt_oss",
            "granite3",
            "granite4",
            "llama2",
            "llama3",
            "llama4",
            "mistral",
            "mistral_small",
            "qwen3",
            "qwen3_vl",
            "vicuna",
            "zephyr",
        ],
        OFFICIAL,
    ),
    **dict.fromkeys(["llava", "llava_next"], "a space after the system text, as LLaVA-1.5's own format (LF: none)"),
    "yuan": "LF writes <sep> as a token id; the fixture's tokenizer has no <sep>, so LF wrote its unknown token",
}
# Tool use (the fixture's "tools" cases) differs from LF for these templates; README's differences list them.
TOOLS_DIFFER: dict[str, str] = {
    **{name: reason for name, reason in DIFFERS.items() if name != "glm4_moe"},
    "glm4_moe": OFFICIAL + " (tool_format: glm4_moe gives LF's text)",
    "phi4_mini": "follows llama.cpp's tool-aware template; LF lists the tool schemas as one JSON list inside <|tool|>",
}


@cache
def _base():
    from tuneforge.models.tokenizer import build_qwen_tokenizer

    tok = build_qwen_tokenizer(DATA["tokenizer"])
    tok.add_special_tokens(DATA["specials"])
    return tok


def _tokenizer(name: str):
    expected = DATA["templates"][name]
    return _fixed(tuple(expected["added"]), expected["eos_token"])


@cache
def _fixed(added: tuple[str, ...], eos_token: str):
    """The tokenizer as LF left it for a template (templates adding the same tokens share one)."""
    tok = copy.deepcopy(_base())
    for token in added:  # in LF's order, so the ids agree
        tok.add_tokens([token], special_tokens=True)
    tok.eos_token = eos_token
    return tok


def _case(name: str, key: str) -> dict:
    case = DATA["cases"][f"thinking:{name}" if key == "thinking" else key]
    messages = [_message(role, content) for role, content in case["messages"]]
    return _example(messages, case["system"] or None, case.get("tools"))


def _message(role: str, content: str) -> dict:
    """A fixture turn (LF's roles: function = the assistant's calls as JSON, observation = tool results)."""
    if role == "function":
        return {"role": "assistant", "content": "", "tool_calls": parse_function_call(content, 0)}
    return {"role": "tool" if role == "observation" else role, "content": content}


def _trained(tok, ids: list[int], labels: list[int]) -> str:
    return "".join(tok.decode([i]) if label != IGNORE else "" for i, label in zip(ids, labels, strict=True))


def _same(tok, ours: dict, theirs: dict) -> bool:
    """Equal up to the README differences: LF's whitespace separator after an end-of-turn is trained (ours is
    prompt-side, and ours stops before the final one); a chunk tokenized as one string may split differently."""
    ids, labels = ours["input_ids"], ours["labels"]
    size = len(ids)
    if ids == theirs["input_ids"][:size] and not tok.decode(theirs["input_ids"][size:]).strip():
        pairs = zip(labels, theirs["labels"][:size], theirs["input_ids"][:size], strict=True)
        return all(a == b or (a == IGNORE and not tok.decode([i]).strip()) for a, b, i in pairs)
    same_text = tok.decode(ids).rstrip("\n") == tok.decode(theirs["input_ids"]).rstrip("\n")
    trained = _trained(tok, ids, labels).replace("\n", "")
    return same_text and trained == _trained(tok, theirs["input_ids"], theirs["labels"]).replace("\n", "")


def _mismatches(name: str, tools: bool = False) -> list[str]:
    """The cases (tool-use ones when ``tools``, the others otherwise) where ours differs from LF's."""
    tok = _tokenizer(name)
    template = get_template(name, tok)
    bad = []
    for key, theirs in DATA["templates"][name]["cases"].items():
        if key.startswith("tools") != tools:
            continue
        (ours,) = _process(template, tok, [_case(name, key)], kind="sft", cutoff_len=DATA["cutoff_len"])
        if not _same(tok, ours, theirs):
            bad.append(f"{key}: ours {tok.decode(ours['input_ids'])!r}\n  LF {tok.decode(theirs['input_ids'])!r}")
    return bad


@pytest.mark.parametrize("name", sorted(DATA["templates"]))
def test_every_llamafactory_text_template_encodes_as_llamafactory(name: str) -> None:
    bad = _mismatches(name)
    if name in DIFFERS:
        assert bad, f"{name} now matches LF: drop it from DIFFERS and README's differences"
    else:
        assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(set(DATA["templates"]) - set(DATA["multimodal"])))
def test_tool_use_encodes_as_llamafactory(name: str) -> None:
    """Tool schemas, tool calls (one, and two where the format allows) and tool results, as LF renders them."""
    if name in TOOLS_DIFFER:
        try:
            bad = _mismatches(name, tools=True)
        except (ConfigError, AssertionError):  # the template refuses tools here (gpt_oss, llama3's parallel calls)
            bad = ["refused"]
        assert bad, f"{name}'s tool use now matches LF: drop it from TOOLS_DIFFER and README's differences"
    else:
        assert not _mismatches(name, tools=True)


def test_fixture_covers_every_llamafactory_template_with_its_media_plugin() -> None:
    from tuneforge.data.templates import get_spec, list_templates

    assert len(DATA["names"]) == 121 and sorted(DATA["templates"]) == DATA["names"]
    assert set(DATA["names"]) <= set(list_templates())
    assert len(DATA["multimodal"]) == 48
    for name in DATA["names"]:
        assert get_spec(name).mm_plugin == DATA["multimodal"].get(name, ""), name
        assert get_spec(name).description, name


def test_config_validate_accepts_every_llamafactory_template_and_suggests_close_names() -> None:
    from tuneforge.config.loader import load_config

    base = {"model_name_or_path": "m", "stage": "sft", "dataset": "d", "output_dir": "o"}
    for name in DATA["names"]:
        assert load_config({**base, "template": name}).data.template == name
    with pytest.raises(ConfigError, match=r"unknown chat template 'qwen2_5'\. Did you mean qwen3_5, qwen2,"):
        load_config({**base, "template": "qwen2_5"})
    with pytest.raises(ConfigError, match="unknown tool format 'qwen9'"):
        load_config({**base, "template": "qwen", "tool_format": "qwen9"})


def test_media_on_a_template_whose_plugin_is_not_built_stops_naming_template_and_plugin() -> None:
    from tuneforge.data.mm import PLUGINS, MediaSettings, build_plugin
    from tuneforge.errors import DataError

    unbuilt = {n: p for n, p in DATA["multimodal"].items() if p not in PLUGINS}
    assert "glm4v" in unbuilt and "qwen3_5" not in unbuilt  # qwen3_5 uses the Qwen3-VL plugin
    assert not {"llava", "llava_next_qwen", "gemma3", "intern_vl"} & set(unbuilt)
    for name, plugin in unbuilt.items():
        with pytest.raises(DataError, match=rf"template '{name}' names media plugin '{plugin}', which tuneforge"):
            build_plugin(get_template(name), "unused", MediaSettings())
