"""Registry, file reading and conversion to the canonical form: LF demo data, inline entries, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_helpers import LF_DATA, alpaca_rows, write_json
from tuneforge.data.convert import convert_rows
from tuneforge.data.loading import read_dataset, sample_rows
from tuneforge.data.registry import resolve_datasets
from tuneforge.data.report import RowReport
from tuneforge.errors import DataError

# name -> (rows, pre-training text?) as listed in shared/lf-data/FORMAT.md
LOCAL = {
    "identity": (91, False),
    "alpaca_en_demo": (999, False),
    "alpaca_zh_demo": (1000, False),
    "glaive_toolcall_en_demo": (300, False),
    "glaive_toolcall_zh_demo": (300, False),
    "dpo_en_demo": (300, False),
    "dpo_zh_demo": (300, False),
    "kto_en_demo": (300, False),
    "c4_demo": (300, True),
    "wiki_demo": (30, True),
}


@pytest.fixture
def lf_data(shared_dir: Path) -> Path:
    return shared_dir / "lf-data"


def load(value, dataset_dir, pretrain=False, strict=False):
    report = RowReport(strict=strict)
    (attr,) = resolve_datasets(value, dataset_dir)
    raw = read_dataset(attr, report)
    return convert_rows(raw, attr, report, pretrain=pretrain), report, attr


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_every_local_registry_entry_converts_without_loss(lf_data: Path, name: str) -> None:
    rows, pretrain = LOCAL[name]
    examples, report, _ = load(name, lf_data, pretrain=pretrain)
    assert report.problems == []
    assert len(examples) == rows
    first = examples.rows[0]
    if pretrain:
        assert first["text"] and not first["messages"]
    else:
        assert first["messages"][0]["role"] == "user"


def test_sharegpt_tool_calls_become_openai_tool_calls(lf_data: Path) -> None:
    examples, _, _ = load("glaive_toolcall_en_demo", lf_data)
    with_calls = [ex for ex in examples.rows if any(m.get("tool_calls") for m in ex["messages"])]
    assert with_calls, "the glaive demo has function calls"
    example = with_calls[0]
    roles = [m["role"] for m in example["messages"]]
    call_at = next(i for i, m in enumerate(example["messages"]) if m.get("tool_calls"))
    call = example["messages"][call_at]["tool_calls"][0]
    assert call["type"] == "function" and isinstance(call["function"]["arguments"], dict)
    assert roles[call_at + 1] == "tool"
    assert isinstance(example["tools"], list) and example["tools"][0]["name"]


def test_preference_and_kto_columns(lf_data: Path) -> None:
    dpo, _, attr = load("dpo_en_demo", lf_data)
    assert attr.ranking
    assert all(ex["chosen"]["role"] == "assistant" and ex["rejected"]["content"] for ex in dpo.rows)
    assert all(ex["messages"][-1]["role"] == "user" for ex in dpo.rows)
    kto, _, _ = load("kto_en_demo", lf_data)
    tags = {ex["kto_tag"] for ex in kto.rows}
    assert tags == {True, False}


def test_identity_placeholders_are_kept(lf_data: Path) -> None:
    examples, _, _ = load("identity", lf_data)
    assert "{{name}}" in examples.rows[0]["messages"][-1]["content"]
    assert "{{author}}" in examples.rows[0]["messages"][-1]["content"]


def test_alpaca_history_system_and_input(tmp_path: Path) -> None:
    row = {"instruction": "Add", "input": "1+1", "output": "2", "system": "Be terse.", "history": [["hi", "hello"]]}
    write_json(tmp_path / "a.json", [row])
    entry = {
        "path": str(tmp_path / "a.json"),
        "formatting": "alpaca",
        "columns": {"history": "history", "system": "system"},
    }
    examples, _, _ = load([entry], tmp_path)
    example = examples.rows[0]
    assert example["system"] == "Be terse."
    assert [m["content"] for m in example["messages"]] == ["hi", "hello", "Add\n1+1", "2"]


def test_unknown_name_lists_close_names_and_registry(lf_data: Path) -> None:
    with pytest.raises(DataError) as err:
        resolve_datasets("alpaca_en_dmo", lf_data)
    assert "alpaca_en_demo" in str(err.value) and "dataset_info.json" in str(err.value)


def test_plain_path_without_registry_detects_sharegpt(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    path = write_json(tmp_path / "chat.json", rows)
    examples, report, attr = load(str(path), tmp_path / "no-such-dir")
    assert attr.formatting == "openai" and report.problems == []
    assert examples.rows[0]["messages"][1] == {"role": "assistant", "content": "yo"}


def test_missing_registry_and_no_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset_info\.json does not exist"):
        resolve_datasets("nowhere", tmp_path)


def test_inline_entry_rejects_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown key"):
        resolve_datasets([{"path": "x.json", "fromatting": "alpaca"}], tmp_path)


def test_hub_dataset_offline_fails_fast_naming_it(monkeypatch: pytest.MonkeyPatch, lf_data: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (attr,) = resolve_datasets("alpaca_en", lf_data)
    with pytest.raises(DataError, match=r"'alpaca_en'.*offline"):
        read_dataset(attr, RowReport())


def test_truncated_json_names_line_and_byte(tmp_path: Path, lf_data: Path) -> None:
    text = (lf_data / "alpaca_en_demo.json").read_text(encoding="utf-8")
    (tmp_path / "cut.json").write_text(text[:5000], encoding="utf-8")
    with pytest.raises(DataError) as err:
        load(str(tmp_path / "cut.json"), tmp_path)
    message = str(err.value)
    assert "cut.json" in message and "line" in message and "byte" in message


def test_bad_rows_are_reported_with_row_numbers(tmp_path: Path) -> None:
    rows = alpaca_rows(4)
    rows[1]["instruction"] = 42
    rows[2] = ["not", "an", "object"]
    write_json(tmp_path / "bad.json", rows)
    examples, report, _ = load(str(tmp_path / "bad.json"), tmp_path)
    assert len(examples) == 2
    assert {p.row for p in report.problems} == {2, 3}
    by_row = {p.row: str(p) for p in report.problems}
    assert "instruction" in by_row[2] and "row 2" in by_row[2]
    assert "expected a JSON object" in by_row[3]


def test_sharegpt_out_of_order_turns_are_reported(tmp_path: Path) -> None:
    good = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    bad = {"conversations": [{"from": "gpt", "value": "b"}, {"from": "human", "value": "a"}]}
    write_json(tmp_path / "sg.json", [good, bad, good])
    entry = {"path": str(tmp_path / "sg.json"), "formatting": "sharegpt"}
    examples, report, _ = load([entry], tmp_path)
    assert len(examples) == 2
    (problem,) = report.problems
    assert problem.row == 2 and "alternate" in problem.reason


def test_strict_data_stops_at_first_bad_row(tmp_path: Path) -> None:
    rows = alpaca_rows(3)
    rows[2]["output"] = ["x"]
    write_json(tmp_path / "bad.json", rows)
    with pytest.raises(DataError, match="row 3"):
        load(str(tmp_path / "bad.json"), tmp_path, strict=True)


def test_jsonl_bad_line_is_reported_by_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in alpaca_rows(3)]
    lines[1] = lines[1][:10]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    examples, report, _ = load(str(tmp_path / "d.jsonl"), tmp_path)
    assert len(examples) == 2 and report.problems[0].row == 2


def test_csv_parquet_and_folder_sources(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(alpaca_rows(5))
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(table.slice(0, 2), folder / "a.parquet")
    pq.write_table(table.slice(2), folder / "b.parquet")
    pa_csv.write_csv(table, tmp_path / "d.csv")
    for source in (str(folder), str(tmp_path / "d.csv")):
        examples, report, _ = load(source, tmp_path)
        assert len(examples) == 5 and not report.problems
        assert examples.rows[4]["messages"][1]["content"] == "Answer 4."


def test_num_samples_and_max_samples(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", alpaca_rows(10))
    (attr,) = resolve_datasets([{"path": str(tmp_path / "a.json"), "num_samples": 25}], tmp_path)
    raw = read_dataset(attr, RowReport())
    sampled = sample_rows(raw, attr.num_samples, None, seed=0)
    assert len(sampled) == 25 and set(sampled.numbers) == set(range(1, 11))
    assert sample_rows(raw, None, 3, seed=0).numbers == [1, 2, 3]


def test_lf_registry_file_is_there() -> None:
    if not LF_DATA.is_dir():
        pytest.skip(f"{LF_DATA} is absent: the LF demo data lives in ../shared")
    assert (LF_DATA / "dataset_info.json").is_file()


def test_openai_messages_with_tool_calls_and_parallel_results(tmp_path: Path) -> None:
    call = {"type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "1+2 and 3+4?"},
        {"role": "assistant", "content": None, "tool_calls": [call, call]},
        {"role": "tool", "content": "3"},
        {"role": "tool", "content": "7"},
        {"role": "assistant", "content": "3 and 7."},
    ]
    bad = {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}
    write_json(tmp_path / "o.json", [{"messages": messages}, bad])
    examples, report, _ = load([{"path": str(tmp_path / "o.json"), "formatting": "openai"}], tmp_path)
    example = examples.rows[0]
    assert example["system"] == "sys" and [m["role"] for m in example["messages"]][-3:] == ["tool", "tool", "assistant"]
    assert example["messages"][1]["tool_calls"][1]["function"]["arguments"] == {"a": 1, "b": 2}
    assert [p.row for p in report.problems] == [2]
