"""The fast batched turn encoder gives exactly the template's own `encode_turns` pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.data.convert import convert_rows
from tuneforge.data.loading import read_dataset, sample_rows
from tuneforge.data.registry import resolve_datasets
from tuneforge.data.report import RowReport
from tuneforge.data.tokens import MemoTokenizer
from tuneforge.data.turns import Turns

DATASETS = ("identity", "glaive_toolcall_en_demo", "glaive_toolcall_zh_demo", "dpo_en_demo", "kto_en_demo")
TEMPLATES = ("qwen", "qwen3", "llama3", "chatglm3", "mistral", "gemma", "alpaca", "deepseek3")


def _conversations(lf_data: Path, name: str, n: int = 15) -> list[dict]:
    report = RowReport()
    (attr,) = resolve_datasets(name, lf_data)
    examples = convert_rows(sample_rows(read_dataset(attr, report), None, n, 0), attr, report)
    out = []
    for ex in examples.rows:
        messages = ex["messages"] + ([ex["chosen"]] if ex["chosen"] else [])
        out.append({"messages": messages, "system": ex["system"], "tools": ex["tools"]})
    return out


def _outcome(fn):
    try:
        return fn()
    except Exception as err:  # both sides must fail alike
        return type(err).__name__


@pytest.mark.parametrize("pieces", [True, False], ids=["pieces", "whole-text"])
@pytest.mark.parametrize("template_name", TEMPLATES)
def test_fast_turns_equal_template_encode_turns(shared_dir, qwen_tokenizer, template_name, pieces):
    from tuneforge.data.templates import get_template

    template = get_template(template_name, qwen_tokenizer)
    tok = MemoTokenizer(qwen_tokenizer)
    turns = Turns(template, tok)
    assert turns.fast and turns.pieces is not None
    if not pieces:
        turns.pieces = None
    conversations = [c for name in DATASETS for c in _conversations(shared_dir / "lf-data", name)]
    tok.recording = True
    for conv in conversations:
        _outcome(lambda conv=conv: turns.pairs(conv["messages"], conv["system"], conv["tools"]))
    tok.recording = False
    tok.encode_pending()
    encoded = 0
    for conv in conversations:
        fast = _outcome(lambda conv=conv: turns.pairs(conv["messages"], conv["system"], conv["tools"]))
        encoded += isinstance(fast, list)
        slow = _outcome(
            lambda conv=conv: template.encode_turns(
                qwen_tokenizer, conv["messages"], system=conv["system"], tools=conv["tools"]
            )
        )
        assert fast == slow
    assert encoded >= len(conversations) // 2  # the comparison is not between two failures
    assert tok.misses == 0


def test_memo_tokenizer_matches_tokenizer(qwen_tokenizer):
    texts = ["Hello world", "<|im_start|>user\n你好<|im_end|>\n", "  spaces\n\n", ""]
    tok = MemoTokenizer(qwen_tokenizer)
    tok.want(texts)
    tok.encode_pending()
    for text in texts:
        assert tok.encode(text, add_special_tokens=False) == qwen_tokenizer.encode(text, add_special_tokens=False)
        mine = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        theirs = qwen_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        assert mine["input_ids"] == theirs["input_ids"]
        assert [tuple(o) for o in mine["offset_mapping"]] == [tuple(o) for o in theirs["offset_mapping"]]


def test_piece_splitting_is_refused_where_it_could_differ(qwen_tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tuneforge.data.pieces import PieceSplitter

    assert PieceSplitter.for_tokenizer(qwen_tokenizer) is not None
    backend = Tokenizer(models.WordLevel({"▁hi": 0, "<unk>": 1}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    sentencepiece_like = PreTrainedTokenizerFast(tokenizer_object=backend, additional_special_tokens=["<s>"])
    assert PieceSplitter.for_tokenizer(sentencepiece_like) is None
