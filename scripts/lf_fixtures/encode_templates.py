"""Encode a few fixed text conversations through EVERY LLaMA-Factory 0.9.5 template (fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root:

    PYTHONPATH=src /work/lfvenv/bin/python scripts/lf_fixtures/encode_templates.py

Same approach as `encode_alpaca.py` (the offline Qwen2 tokenizer with `<s>` / `</s>` bos and eos, LF's template and
supervised processor). LF adapts the tokenizer per template (eos replaced by the first stop word, stop words added as
special tokens); the tokens it added are stored with their ids so the test can add the same ones. Cases: one turn,
system + one turn, two turns, for reasoning templates a turn whose answer carries a thinking block, and tool use
(tool schemas, one or two tool calls, their results, the answer) where LF can render it. Each LF tool format's own
text is stored too (schemas, calls, what LF's extractor reads back), so formats whose templates are multimodal
(gemma4, qwen3_5) are pinned as well. Multimodal templates are encoded for the text cases without tools (no media,
so a stand-in processor that is never used); the fixture also lists every LF template name and which of them are
multimodal (with LF's media plugin name). Output: `tests/fixtures/lf_template_ids.json`, compared by
`tests/test_lf_templates.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_alpaca import ROOT, SPECIALS, _tokenizer_dir

CUTOFF = 1024
USER, ANSWER = "Name a fast car.", "The car accelerated quickly."
CASES = {
    "single": {"system": "", "messages": [("user", USER), ("assistant", ANSWER)]},
    "system": {"system": "Be brief.", "messages": [("user", USER), ("assistant", ANSWER)]},
    "multi": {
        "system": "",
        "messages": [("user", USER), ("assistant", ANSWER), ("user", "And a slow one?"), ("assistant", "Tractors.")],
    },
}


TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "days": {"type": "integer", "description": "Days ahead"},
            },
            "required": ["city"],
        },
    },
    {
        "name": "get_time",
        "description": "Local time.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
]
WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}
TIME = {"name": "get_time", "arguments": {"zone": "CET"}}
TOOL_CASES = {
    "tools": {
        "system": "",
        "tools": TOOLS,
        "messages": [
            ("user", "Weather in Paris?"),
            ("function", json.dumps(WEATHER)),
            ("observation", '{"temp": 21}'),
            ("assistant", "It is 21 degrees."),
        ],
    },
    "tools_parallel": {
        "system": "Be brief.",
        "tools": TOOLS,
        "messages": [
            ("user", "Weather and time in Paris?"),
            ("function", json.dumps([WEATHER, TIME])),
            ("observation", '{"temp": 21}'),
            ("assistant", "21 degrees."),
        ],
    },
}
TOOL_CALLS = {
    "single": [WEATHER],
    "parallel": [WEATHER, TIME],
    "nested": [{"name": "f", "arguments": {"x": [1, {"y": True}], "s": "a b"}}],
}


def _thinking_case(open_word: str, close_word: str) -> dict:
    answer = f"{open_word}Fast means quick.{close_word}{ANSWER}"
    return {"system": "", "messages": [("user", USER), ("assistant", answer)]}


def _examples(case: dict) -> dict[str, list]:
    """One conversation in LLaMA-Factory's internal form."""
    turns = [{"role": role, "content": content} for role, content in case["messages"]]
    return {
        "_prompt": [turns[:-1]],
        "_response": [turns[-1:]],
        "_system": [case["system"]],
        "_tools": [json.dumps(case["tools"]) if case.get("tools") else ""],
        "_images": [[]],
        "_videos": [[]],
        "_audios": [[]],
    }


class _MediaStub(str):
    """A stand-in multimodal processor: LF's media plugins insist on one and read its settings even for rows without
    media; the text-only cases here never use them (no image, video or audio is passed), so every setting is an
    empty string that also counts as 1."""

    model_input_names: tuple = ()

    def __getattr__(self, name: str) -> _MediaStub:
        return self

    def __index__(self) -> int:
        return 1

    __int__ = __index__

    def __pow__(self, other: object) -> int:
        return 1

    __floordiv__ = __pow__


def _encode(name: str, folder: str, cases: dict) -> dict:
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens(SPECIALS)
    base = len(tokenizer)
    data_args = DataArguments(template=name, cutoff_len=CUTOFF)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    stub = _MediaStub() if type(template.mm_plugin).__name__ != "BasePlugin" else None
    processor = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=stub, data_args=data_args)
    added = sorted((i, t) for t, i in tokenizer.get_added_vocab().items() if i >= base)
    out: dict = {"eos_token": tokenizer.eos_token, "added": [t for _, t in added], "cases": {}}
    for key, case in cases.items():
        try:
            encoded = processor.preprocess_dataset(_examples(case))
        except ValueError as error:  # e.g. GLM-4's format has no parallel calls
            out.setdefault("refused", {})[key] = str(error)
            continue
        out["cases"][key] = {"input_ids": encoded["input_ids"][0], "labels": encoded["labels"][0]}
    return out


def _tool_formats() -> dict:
    """Each LF tool format's text for TOOLS and for TOOL_CALLS, and what its extractor reads back from the calls."""
    from llamafactory.data.tool_utils import TOOLS as FORMATS
    from llamafactory.data.tool_utils import FunctionCall

    out: dict = {}
    for name, utils in sorted(FORMATS.items()):
        if name == "llama3":  # its schema text carries today's date
            continue
        entry: dict = {"tools": utils.tool_formatter(TOOLS), "calls": {}}
        for key, calls in TOOL_CALLS.items():
            functions = [FunctionCall(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in calls]
            try:
                text = utils.function_formatter(functions)
            except ValueError as error:
                entry["calls"][key] = {"refused": str(error)}
                continue
            read = utils.tool_extractor(text)
            read = read if isinstance(read, str) else [[f.name, json.loads(f.arguments)] for f in read]
            entry["calls"][key] = {"text": text, "extracted": read}
        out[name] = entry
    return out


def main() -> int:
    sys.modules["torchvision"] = None  # the reference env's torchvision does not match its torch; LF needs none here
    from llamafactory.data.mm_plugin import PLUGINS
    from llamafactory.data.template import TEMPLATES

    folder = _tokenizer_dir()
    texts = {n: t for n, t in TEMPLATES.items() if type(t.mm_plugin).__name__ == "BasePlugin"}
    plugin_names = {cls: name for name, cls in PLUGINS.items()}
    out: dict = {"tokenizer": "qwen2", "specials": SPECIALS, "cutoff_len": CUTOFF, "templates": {}}
    out["names"] = sorted(TEMPLATES)
    out["multimodal"] = {n: plugin_names[type(t.mm_plugin)] for n, t in sorted(TEMPLATES.items()) if n not in texts}
    out["cases"] = {k: {"system": c["system"], "messages": c["messages"]} for k, c in CASES.items()}
    out["cases"].update(TOOL_CASES)
    out["tool_calls"] = TOOL_CALLS
    out["tool_formats"] = _tool_formats()
    for name, template in sorted(TEMPLATES.items()):
        cases = {**CASES, **TOOL_CASES} if name in texts else dict(CASES)  # tools on multimodal ones: not yet
        if type(template).__name__ != "Template":  # LF's reasoning templates
            cases["thinking"] = _thinking_case(*template.thought_words)
            out["cases"][f"thinking:{name}"] = cases["thinking"]
        out["templates"][name] = _encode(name, folder, cases)
    target = ROOT / "tests" / "fixtures" / "lf_template_ids.json"
    target.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(out['templates'])} templates, {len(out['multimodal'])} multimodal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
