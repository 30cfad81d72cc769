"""prepare_dataset end to end: every LF demo dataset for its stage, label masking, truncation, bad rows, cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_helpers import alpaca_rows, data_config, write_json
from tuneforge.data.pipeline import prepare_dataset
from tuneforge.errors import DataError

IGNORE = -100


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


CASES = [
    ("sft", "identity", {"input_ids", "labels"}),
    ("sft", "alpaca_en_demo,alpaca_zh_demo", {"input_ids", "labels"}),
    ("sft", "glaive_toolcall_en_demo,glaive_toolcall_zh_demo", {"input_ids", "labels"}),
    ("rm", "dpo_en_demo", {"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"}),
    ("dpo", "dpo_zh_demo", {"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"}),
    ("kto", "kto_en_demo", {"input_ids", "labels", "kl_input_ids", "kl_labels", "kto_tags"}),
    ("pt", "c4_demo,wiki_demo", {"input_ids", "labels"}),
]


@pytest.mark.parametrize(("stage", "dataset", "columns"), CASES, ids=[c[1] for c in CASES])
def test_lf_demo_datasets_process_for_their_stage(shared_dir, qwen_tokenizer, tmp_path, stage, dataset, columns):
    cfg = data_config(tmp_path, stage=stage, dataset=dataset, max_samples=40)
    splits = prepare_dataset(cfg, qwen_tokenizer)
    assert set(splits.train.column_names) == columns
    assert len(splits.train) > 0
    assert all(d.rows_dropped == 0 for d in splits.stats.datasets)
    row = splits.train[0]
    ids_key = "chosen_input_ids" if "chosen_input_ids" in columns else "input_ids"
    assert 0 < len(row[ids_key]) <= 1024
    if stage != "pt":
        assert any(label != IGNORE for label in row[ids_key.replace("input_ids", "labels")])


def test_sft_labels_mask_the_prompt(shared_dir, qwen_tokenizer, tmp_path):
    path = write_json(tmp_path / "d.json", [{"instruction": "Say hi", "input": "", "output": "Hi there!"}])
    row = prepare_dataset(data_config(tmp_path, dataset=str(path)), qwen_tokenizer).train[0]
    trained = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE]
    assert qwen_tokenizer.decode(trained) == "Hi there!<|im_end|>"
    assert row["labels"][: len(row["labels"]) - len(trained)] == [IGNORE] * (len(row["labels"]) - len(trained))
    assert qwen_tokenizer.decode(row["input_ids"]).endswith("<|im_start|>assistant\nHi there!<|im_end|>")


def _two_turns(tmp_path: Path) -> Path:
    turns = [("human", "u1"), ("gpt", "a1"), ("human", "u2"), ("gpt", "a2")]
    rows = [{"conversations": [{"from": role, "value": text} for role, text in turns]}]
    return write_json(tmp_path / "chat.json", rows)


@pytest.mark.parametrize(("option", "expected"), [({}, ["a1", "a2"]), ({"mask_history": True}, ["a2"])])
def test_multi_turn_and_mask_history(shared_dir, qwen_tokenizer, tmp_path, option, expected):
    cfg = data_config(tmp_path, dataset=[{"path": str(_two_turns(tmp_path)), "formatting": "sharegpt"}], **option)
    row = prepare_dataset(cfg, qwen_tokenizer).train[0]
    runs, current = [], []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != IGNORE:
            current.append(token)
        elif current:
            runs.append(qwen_tokenizer.decode(current)), current.clear()
    runs += [qwen_tokenizer.decode(current)] if current else []
    assert runs == [f"{text}<|im_end|>" for text in expected]


def test_train_on_prompt_trains_everything(shared_dir, qwen_tokenizer, tmp_path):
    path = write_json(tmp_path / "d.json", alpaca_rows(2))
    row = prepare_dataset(data_config(tmp_path, dataset=str(path), train_on_prompt=True), qwen_tokenizer).train[0]
    assert row["labels"] == row["input_ids"]


def test_truncation_keeps_response_share_and_cutoff(shared_dir, qwen_tokenizer, tmp_path):
    rows = [{"instruction": "word " * 400, "input": "", "output": "answer " * 400}]
    path = write_json(tmp_path / "long.json", rows)
    row = prepare_dataset(data_config(tmp_path, dataset=str(path), cutoff_len=100), qwen_tokenizer).train[0]
    trained = sum(label != IGNORE for label in row["labels"])
    assert len(row["input_ids"]) == 100 and 30 <= trained <= 70
    assert qwen_tokenizer.decode(row["input_ids"]).count("<|im_start|>assistant\n") == 1


def test_empty_responses_are_reported_and_all_empty_is_an_error(shared_dir, qwen_tokenizer, tmp_path, caplog):
    rows = alpaca_rows(4)
    rows[2]["output"] = ""
    path = write_json(tmp_path / "d.json", rows)
    splits = prepare_dataset(data_config(tmp_path, dataset=str(path)), qwen_tokenizer)
    assert len(splits.train) == 3 and splits.stats.datasets[0].rows_dropped == 1
    assert any("row 3" in line and "empty response" in line for line in splits.stats.problems)
    empty = write_json(tmp_path / "empty.json", alpaca_rows(3, output=""))
    with pytest.raises(DataError, match=r"no valid row.*empty response"):
        prepare_dataset(data_config(tmp_path, dataset=str(empty)), qwen_tokenizer)


def test_unsupervised_prompt_and_reference(shared_dir, qwen_tokenizer, tmp_path):
    path = write_json(tmp_path / "d.json", alpaca_rows(2))
    row = prepare_dataset(data_config(tmp_path, dataset=str(path)), qwen_tokenizer, kind="unsupervised").train[0]
    assert qwen_tokenizer.decode(row["input_ids"]).endswith("Question 0?<|im_end|>\n<|im_start|>assistant\n")
    assert qwen_tokenizer.decode(row["labels"]) == "Answer 0.<|im_end|>"


def test_kto_kl_completion_is_the_previous_rows_response(shared_dir, qwen_tokenizer, tmp_path):
    cfg = data_config(tmp_path, stage="kto", dataset="kto_en_demo", max_samples=5, cutoff_len=8192)
    train = prepare_dataset(cfg, qwen_tokenizer).train

    def answer(row: dict, prefix: str = "") -> list[int]:
        return [t for t, lab in zip(row[f"{prefix}input_ids"], row[f"{prefix}labels"], strict=True) if lab != IGNORE]

    assert train[1]["kl_input_ids"] != train[1]["input_ids"]
    assert [answer(train[i], "kl_") for i in range(5)] == [answer(train[i - 1]) for i in range(5)]  # LF: row i-1


def test_cache_hit_then_rebuild_on_data_or_template_change(shared_dir, qwen_tokenizer, tmp_path):
    path = write_json(tmp_path / "d.json", alpaca_rows(6))
    cfg = data_config(tmp_path, dataset=str(path))
    first = prepare_dataset(cfg, qwen_tokenizer)
    second = prepare_dataset(cfg, qwen_tokenizer)
    assert not first.stats.cache_hit and second.stats.cache_hit
    assert second.train["input_ids"] == first.train["input_ids"]
    write_json(path, alpaca_rows(7))
    changed = prepare_dataset(cfg, qwen_tokenizer)
    assert not changed.stats.cache_hit and len(changed.train) == 7
    other = prepare_dataset(data_config(tmp_path, dataset=str(path), template="qwen3_nothink"), qwen_tokenizer)
    assert not other.stats.cache_hit and other.train["input_ids"] != changed.train["input_ids"]
    forced = prepare_dataset(data_config(tmp_path, dataset=str(path), overwrite_cache=True), qwen_tokenizer)
    assert not forced.stats.cache_hit


def test_tokenized_path_saves_then_loads(shared_dir, qwen_tokenizer, tmp_path, caplog):
    path = write_json(tmp_path / "d.json", alpaca_rows(5))
    saved = prepare_dataset(
        data_config(tmp_path, dataset=str(path), tokenized_path=str(tmp_path / "tok")), qwen_tokenizer
    )
    assert (tmp_path / "tok").is_dir()
    cfg = data_config(tmp_path, dataset="alpaca_en_demo", tokenized_path=str(tmp_path / "tok"))
    loaded = prepare_dataset(cfg, qwen_tokenizer)
    assert loaded.train["input_ids"] == saved.train["input_ids"]
    assert "data arguments are ignored" in caplog.text


def test_val_size_and_interleaving(shared_dir, qwen_tokenizer, tmp_path):
    a = write_json(tmp_path / "a.json", alpaca_rows(20))
    b = write_json(tmp_path / "b.json", alpaca_rows(5, output="B {i}."))
    cfg = data_config(tmp_path, dataset=f"{a},{b}", mix_strategy="interleave_under", val_size=0.2)
    splits = prepare_dataset(cfg, qwen_tokenizer)
    assert len(splits.train) + len(splits.eval) == 10  # alternate until b (5 rows) runs out
    assert len(splits.eval) == 2
    over = prepare_dataset(data_config(tmp_path, dataset=f"{a},{b}", mix_strategy="interleave_over"), qwen_tokenizer)
    assert len(over.train) == 39  # a (20 rows) runs out on the 39th row; b repeats meanwhile


def test_inline_dataset_entries(shared_dir, qwen_tokenizer, tmp_path):
    rows = [{"q": "Hello?", "a": "Hi."}]
    path = write_json(tmp_path / "qa.json", rows)
    entry = {"path": str(path), "columns": {"prompt": "q", "response": "a"}, "formatting": "alpaca"}
    splits = prepare_dataset(data_config(tmp_path, dataset=[entry]), qwen_tokenizer)
    assert qwen_tokenizer.decode(splits.train[0]["input_ids"]).endswith(
        "Hello?<|im_end|>\n<|im_start|>assistant\nHi.<|im_end|>"
    )


def test_workers_give_the_same_rows_and_report_bad_ones(shared_dir, qwen_tokenizer, tmp_path, monkeypatch):
    from tuneforge.data import parallel

    monkeypatch.setattr(parallel, "MIN_DISTINCT_ROWS", 10)
    monkeypatch.setattr(parallel, "MIN_CPUS", 1)
    rows = alpaca_rows(30)
    rows[17]["output"] = ""
    path = write_json(tmp_path / "d.json", rows)
    one = prepare_dataset(data_config(tmp_path, dataset=str(path), preprocessing_num_workers=1), qwen_tokenizer)
    two = prepare_dataset(data_config(tmp_path, dataset=str(path), preprocessing_num_workers=2), qwen_tokenizer)
    assert two.train["input_ids"] == one.train["input_ids"] and len(two.train) == 29
    assert any("row 18" in line for line in two.stats.problems)


def test_streaming_yields_tokenized_rows(shared_dir, qwen_tokenizer, tmp_path):
    cfg = data_config(
        tmp_path, dataset="identity", streaming=True, buffer_size=8, val_size=2, max_samples=20, max_steps=5
    )
    splits = prepare_dataset(cfg, qwen_tokenizer)
    train, evaluation = list(splits.train), list(splits.eval)
    assert len(train) == 18 and len(evaluation) == 2
    assert set(train[0]) == {"input_ids", "labels"} and any(label != IGNORE for label in train[0]["labels"])


@pytest.mark.parametrize(
    ("stage", "dataset", "message"), [("sft", "dpo_en_demo", "preference data"), ("dpo", "identity", "ranking")]
)
def test_dataset_that_cannot_serve_the_stage_is_refused(shared_dir, qwen_tokenizer, tmp_path, stage, dataset, message):
    with pytest.raises(DataError, match=message):
        prepare_dataset(data_config(tmp_path, stage=stage, dataset=dataset), qwen_tokenizer)
