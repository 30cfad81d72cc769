"""Tiny local lm-eval tasks in MMLU and C-Eval layout (YAML + JSON-lines data, no download), and their questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

LETTERS = "ABCD"
# MMLU layout: group -> category groups -> subject tasks; C-Eval layout: one flat group of subject tasks.
MMLU_SUBJECTS = {"stem": ["physics", "algebra"], "humanities": ["history", "philosophy"]}
CEVAL_SUBJECTS = ["computer_network", "college_economics", "logic", "physician"]  # one per C-Eval category
MMLU_TEXT = "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
WORDS = ["red", "green", "blue", "cyan", "amber", "olive", "navy", "plum", "teal", "gold", "rose", "sand"]


def questions(subject: str, n: int) -> list[dict[str, Any]]:
    """`n` deterministic four-choice questions for `subject` (answer index varies)."""
    rows = []
    for i in range(n):
        choices = [WORDS[(i * 3 + j + len(subject)) % len(WORDS)] for j in range(4)]
        rows.append({"question": f"Which colour is number {i} of {subject}?", "choices": choices, "answer": i % 4})
    return rows


def mmlu_prompt(row: dict[str, Any]) -> str:
    """lm-eval's MMLU `doc_to_text` for one row."""
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, row["choices"], strict=True))
    return f"{row['question'].strip()}\n{options}\nAnswer:"


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _dump(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_mmlu_task(root: Path, name: str = "tiny_mmlu", n: int = 4) -> dict[str, list[dict[str, Any]]]:
    """Write an MMLU-layout task dir under `root`; return each subject's test rows."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    tests: dict[str, list[dict[str, Any]]] = {}
    for category, subjects in MMLU_SUBJECTS.items():
        for subject in subjects:
            rows = questions(subject, n)
            tests[subject] = rows
            data = {"test": _write_jsonl(folder / f"{subject}_test.jsonl", rows)}
            data["dev"] = _write_jsonl(folder / f"{subject}_dev.jsonl", questions(subject + "_dev", 2))
            task = _task(f"{name}_{subject}", data, "test", 1.0)
            task.update(task_alias=subject, tag=f"{name}_{category}_tasks", doc_to_target="answer")
            task["description"] = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            task["doc_to_text"] = MMLU_TEXT
            _dump(folder / f"{name}_{subject}.yaml", task)
        _dump(folder / f"_{name}_{category}.yaml", _group(f"{name}_{category}", [f"{name}_{category}_tasks"], category))
    _dump(folder / f"_{name}.yaml", _group(name, [f"{name}_{c}" for c in MMLU_SUBJECTS]))
    return tests


def write_ceval_task(root: Path, name: str = "tiny_ceval", n: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Write a C-Eval-layout task dir (letters as answers, a `val` split) under `root`; return its val rows."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    tests: dict[str, list[dict[str, Any]]] = {}
    for subject in CEVAL_SUBJECTS:
        tests[subject] = questions(subject, n)
        rows = [_ceval_row(i, r) for i, r in enumerate(tests[subject])]
        dev = [_ceval_row(i, r) for i, r in enumerate(questions(subject + "_dev", 2))]
        data = {"val": _write_jsonl(folder / f"{subject}_val.jsonl", rows)}
        data["dev"] = _write_jsonl(folder / f"{subject}_dev.jsonl", dev)
        task = _task(f"{name}_{subject}", data, "validation", 2.0)
        task["description"] = f"以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n"
        task["doc_to_text"] = "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n答案："
        task["doc_to_target"] = "{{['A', 'B', 'C', 'D'].index(answer)}}"
        _dump(folder / f"{name}_{subject}.yaml", task)
    _dump(folder / f"_{name}.yaml", _group(name, [f"{name}_{s}" for s in CEVAL_SUBJECTS]))
    return tests


def _task(name: str, data: dict[str, str], split: str, version: float) -> dict[str, Any]:
    """What every subject task shares: local JSON data, a dev split for few-shot, four lettered choices, accuracy."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": data},
        f"{split}_split": next(key for key in data if key != "dev"),
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "doc_to_choice": list(LETTERS),
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": version},
    }


def _ceval_row(index: int, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": index,
        "question": row["question"],
        **dict(zip(LETTERS, row["choices"], strict=True)),
        "answer": LETTERS[row["answer"]],
    }


def _group(name: str, members: list[str], alias: str | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"group": name, "task": members}
    if alias:
        group["group_alias"] = alias
    group["aggregate_metric_list"] = [{"metric": "acc", "weight_by_size": True}]
    group["metadata"] = {"version": 1}
    return group


def write_generation_task(root: Path, prompts: list[str], targets: list[str], name: str = "tiny_gen") -> None:
    """A `generate_until` task (stop at a newline, at most 4 new tokens) scored by exact match."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": p, "target": t} for p, t in zip(prompts, targets, strict=True)]
    data = {"test": _write_jsonl(folder / "test.jsonl", rows)}
    task = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": data},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{target}}",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    _dump(folder / f"{name}.yaml", task)
