"""Encode a few fixed text conversations through EVERY LLaMA-Factory 0.9.5 template (fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root:

    PYTHONPATH=src /work/lfvenv/bin/python scripts/lf_fixtures/encode_templates.py

Same approach as `encode_alpaca.py` (the offline Qwen2 tokenizer with `<s>` / `</s>` bos and eos, LF's template and
supervised processor). LF adapts the tokenizer per template (eos replaced by the first stop word, stop words added as
special tokens); the tokens it added are stored with their ids so the test can add the same ones. Cases: one turn,
system + one turn, two turns, and for reasoning templates a turn whose answer carries a thinking block. Output:
`tests/fixtures/lf_template_ids.json`, compared by `tests/test_lf_templates.py`. Multimodal templates are encoded
for the same text-only conversations (no media, so no processor is needed); the fixture also lists every LF template
name and which of them are multimodal (with LF's media plugin name).
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
        "_tools": [""],
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
        encoded = processor.preprocess_dataset(_examples(case))
        out["cases"][key] = {"input_ids": encoded["input_ids"][0], "labels": encoded["labels"][0]}
    return out


def main() -> int:
    sys.modules["torchvision"] = None  # the reference env's torchvision does not match its torch; LF needs none here
    from llamafactory.data.mm_plugin import PLUGINS
    from llamafactory.data.template import TEMPLATES

    folder = _tokenizer_dir()
    plugin_names = {cls: name for name, cls in PLUGINS.items()}
    out: dict = {"tokenizer": "qwen2", "specials": SPECIALS, "cutoff_len": CUTOFF, "templates": {}}
    out["names"] = sorted(TEMPLATES)
    plugins = {n: type(t.mm_plugin) for n, t in sorted(TEMPLATES.items())}
    out["multimodal"] = {n: plugin_names[p] for n, p in plugins.items() if p.__name__ != "BasePlugin"}
    out["cases"] = {k: {"system": c["system"], "messages": c["messages"]} for k, c in CASES.items()}
    for name, template in sorted(TEMPLATES.items()):
        cases = dict(CASES)
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
