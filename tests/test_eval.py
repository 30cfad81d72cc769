"""`tuneforge eval`: LF keys -> lm-eval plan, reading lm-eval results into categories, and (slow) real runs on tiny
local tasks in MMLU and C-Eval layout: accuracy equals a count made here, a trained adapter beats its base."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eval_helpers import LETTERS, MMLU_SUBJECTS, mmlu_prompt, write_ceval_task, write_generation_task, write_mmlu_task
from tuneforge.config import load_config
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.eval.plan import build_plan, require_lm_eval
from tuneforge.eval.report import deltas, render, task_scores

MMLU_DESCRIPTION = "The following are multiple choice questions (with answers) about {}.\n\n"


def _cfg(**keys: Any) -> Any:
    return load_config({"model_name_or_path": "org/model", **keys})


@pytest.mark.parametrize(
    ("lf", "native"), [("mmlu_test", "mmlu"), ("cmmlu_test", "cmmlu"), ("ceval_validation", "ceval-valid")]
)
def test_llamafactory_keys_make_the_same_lm_eval_plan_as_native_ones(lf: str, native: str) -> None:
    common = {"n_shot": 3, "batch_size": 2, "seed": 7}
    assert build_plan(_cfg(task=lf, **common)) == build_plan(_cfg(tasks=native, **common))
    plan = build_plan(_cfg(task=lf, **common))
    assert (plan.tasks, plan.num_fewshot, plan.batch_size, plan.seed) == ((native,), 3, 2, 7)


def test_tasks_and_task_combine_without_repeats() -> None:
    assert build_plan(_cfg(tasks="gsm8k, mmlu", task="mmlu_test")).tasks == ("gsm8k", "mmlu")
    assert build_plan(_cfg(task="my_quiz_validation")).tasks == ("my_quiz",)  # a task of task_dir


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"task": "ceval_test"}, "use `task: ceval_validation`"),
        ({"task": "mmlu_test", "lang": "zh"}, "set `lang: en`"),
        ({"task": "mmlu"}, "not `name_split`"),
        ({}, "Nothing to evaluate"),
        ({"tasks": "mmlu", "task_dir": "/no/such/folder"}, "is not a folder"),
    ],
)
def test_bad_evaluation_keys_are_refused_with_what_to_write(keys: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("`", ".")):
        build_plan(_cfg(**keys))


def test_lang_without_an_llamafactory_benchmark_warns(caplog: pytest.LogCaptureFixture) -> None:
    build_plan(_cfg(tasks="gsm8k", lang="zh"))
    assert "`lang: zh` has no effect" in caplog.text
    caplog.clear()
    build_plan(_cfg(task="cmmlu_test", lang="zh"))
    assert "has no effect" not in caplog.text


def test_download_mode_warns_and_compare_with_base_needs_adapters(caplog: pytest.LogCaptureFixture) -> None:
    from tuneforge.eval.runner import compare_config

    build_plan(_cfg(tasks="mmlu", download_mode="force_redownload"))
    assert "`download_mode: force_redownload` has no effect" in caplog.text
    with pytest.raises(ConfigError, match="adapter_name_or_path"):
        compare_config(_cfg(tasks="mmlu", compare_with="base"))
    other = compare_config(_cfg(tasks="mmlu", adapter_name_or_path="a", compare_with="org/other"))
    assert other.model.model_name_or_path == "org/other" and other.model.adapter_name_or_path is None


def test_unknown_tasks_and_tags_are_refused_before_loading_the_model(tmp_path: Path) -> None:
    from tuneforge.eval.runner import eval_command

    write_mmlu_task(tmp_path / "tasks")
    keys = {"model_name_or_path": "org/never-loaded", "task_dir": str(tmp_path / "tasks")}
    with pytest.raises(ConfigError, match="an lm-eval tag"):
        eval_command(load_config({**keys, "tasks": "tiny_mmlu_stem_tasks"}))


def test_missing_lm_eval_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(TuneforgeError, match=r"pip install 'tuneforge\[eval\]'"):
        require_lm_eval()


def _fake_output(scores: dict[str, float], groups: dict[str, list[str]], n: dict[str, int]) -> dict[str, Any]:
    results = {name: {"alias": name, "acc,none": value, "acc_stderr,none": "N/A"} for name, value in scores.items()}
    for group in groups:
        results[group] = {"alias": group, "acc,none": 0.0}
    return {"results": results, "group_subtasks": groups, "n-samples": {k: {"effective": v} for k, v in n.items()}}


def test_nested_groups_become_categories_weighted_by_questions() -> None:
    out = _fake_output(
        {"m_a": 1.0, "m_b": 0.0, "m_c": 0.5},
        {"m": ["m_stem", "m_hum"], "m_stem": ["m_a", "m_b"], "m_hum": ["m_c"]},
        {"m_a": 1, "m_b": 3, "m_c": 4},
    )
    scores = task_scores(out, "m")
    assert scores.categories["m_stem"].value == pytest.approx(0.25) and scores.categories["m_stem"].n == 4
    assert scores.overall.value == pytest.approx((1 + 0 + 2) / 8) and scores.overall.n == 8
    assert set(scores.subjects) == {"m_a", "m_b", "m_c"}


def test_ceval_subjects_fall_into_ceval_categories_and_deltas_subtract() -> None:
    subjects = ["ceval-valid_college_physics", "ceval-valid_high_school_physics", "ceval-valid_law"]
    out = _fake_output(
        dict(zip(subjects, [1.0, 0.5, 0.0], strict=True)), {"ceval-valid": subjects}, dict.fromkeys(subjects, 2)
    )
    tuned = task_scores(out, "ceval-valid")
    assert {k: v.value for k, v in tuned.categories.items()} == {"STEM": 0.75, "Humanities": 0.0}
    base_out = _fake_output(dict.fromkeys(subjects, 0.25), {"ceval-valid": subjects}, dict.fromkeys(subjects, 2))
    rows = deltas([task_scores(base_out, "ceval-valid")], [tuned])
    assert rows[0] == {"task": "ceval-valid", "category": "STEM", "base": 0.25, "tuned": 0.75, "delta": 0.5}
    text = render([tuned], "heading", [task_scores(base_out, "ceval-valid")])
    assert "STEM" in text and "+50.00" in text and "overall" in text


def test_cmmlu_subjects_count_in_their_category_and_in_china_specific() -> None:
    subjects = ["cmmlu_anatomy", "cmmlu_ancient_chinese", "cmmlu_economics"]
    out = _fake_output(
        dict(zip(subjects, [1.0, 0.0, 0.5], strict=True)), {"cmmlu": subjects}, dict.fromkeys(subjects, 2)
    )
    categories = {k: v.value for k, v in task_scores(out, "cmmlu").categories.items()}
    assert categories == {"STEM": 1.0, "Social Science": 0.25, "China specific": 0.0}


# ---- real runs (slow) -----------------------------------------------------------------------------------------


def _loglikelihood(model: Any, tokenizer: Any, context: str, continuation: str) -> float:
    import torch

    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    start = len(tokenizer.encode(context, add_special_tokens=False))
    with torch.no_grad():
        logprobs = model(torch.tensor([whole])).logits[0].float().log_softmax(-1)
    return sum(float(logprobs[i - 1, whole[i]]) for i in range(start, len(whole)))


def _count_correct(model_dir: Path, tests: dict[str, list[dict[str, Any]]], description: str) -> tuple[int, int]:
    """Questions whose right letter has the highest log-likelihood, counted with plain transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    correct = total = 0
    for subject, rows in tests.items():
        for row in rows:
            context = description.format(subject) + mmlu_prompt(row)
            scores = [_loglikelihood(model, tokenizer, context, f" {letter}") for letter in LETTERS]
            correct += int(max(range(4), key=scores.__getitem__) == row["answer"])
            total += 1
    return correct, total


@pytest.mark.slow
def test_mmlu_layout_accuracy_equals_an_independent_count_with_lf_and_native_keys(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    from tuneforge.eval.runner import eval_command

    tests = write_mmlu_task(tmp_path / "tasks")
    common = {"model_name_or_path": str(tiny_qwen2), "task_dir": str(tmp_path / "tasks"), "n_shot": 0}
    lf = eval_command(load_config({**common, "task": "tiny_mmlu_test", "save_dir": str(tmp_path / "lf")}))
    native = eval_command(load_config({**common, "tasks": "tiny_mmlu"}))
    correct, total = _count_correct(tiny_qwen2, tests, MMLU_DESCRIPTION)
    overall = lf["scores"][0]["overall"]
    assert overall == {"score": pytest.approx(correct / total), "questions": total}
    assert native["scores"] == lf["scores"] and native["lm_eval_run"] == lf["lm_eval_run"]
    assert set(lf["scores"][0]["categories"]) == set(MMLU_SUBJECTS)
    saved = json.loads((tmp_path / "lf" / "results.json").read_text())
    assert saved["model"]["model_sha256"] and saved["lm_eval_version"] and saved["task_versions"]["tiny_mmlu_physics"]
    assert saved["config"]["task"] == "tiny_mmlu_test" and saved["chat_template_applied"] is False


@pytest.mark.slow
def test_ceval_layout_reports_ceval_categories_with_the_chat_template(tiny_qwen2: Path, tmp_path: Path) -> None:
    from tuneforge.eval.runner import eval_command

    write_ceval_task(tmp_path / "tasks")
    cfg = {"model_name_or_path": str(tiny_qwen2), "task_dir": str(tmp_path / "tasks"), "tasks": "tiny_ceval"}
    record = eval_command(load_config({**cfg, "n_shot": 1, "apply_chat_template": True, "template": "qwen"}))
    assert list(record["scores"][0]["categories"]) == ["STEM", "Social Science", "Humanities", "Other"]
    assert record["scores"][0]["overall"]["questions"] == 12 and record["chat_template_applied"] is True


@pytest.mark.slow
def test_batched_loglikelihoods_equal_one_by_one_scores(tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.eval.lm import TuneforgeLM
    from tuneforge.infer import load_engine

    pairs = [("Hi", " there"), ("A much longer context with many words in it", " and an ending"), ("x", " y z")]
    engine = load_engine(load_config({"model_name_or_path": str(tiny_qwen2)}))
    try:
        lm = TuneforgeLM(engine, batch_size=2)
        requests = [(pair, *lm._encode_pair(*pair)) for pair in pairs]
        scores = [score for score, _ in lm._loglikelihood_tokens(requests)]
        rolling = lm.loglikelihood_rolling([SimpleNamespace(args=("Some text to score whole.",))])
    finally:
        engine.close()
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2)
    expected = [_loglikelihood(model, tokenizer, context, cont) for context, cont in pairs]
    assert scores == pytest.approx(expected, abs=1e-4)
    # the whole text after the eos (Qwen has no bos) as the one window that fits
    whole = _loglikelihood(model, tokenizer, tokenizer.eos_token, "Some text to score whole.")
    assert rolling == pytest.approx([whole], abs=1e-4)


@pytest.mark.slow
def test_generation_task_answers_equal_greedy_decoding(tiny_qwen2: Path, tmp_path: Path) -> None:
    """Half the targets are the model's own greedy answers (plain transformers), half can never match: 50%."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.eval.runner import eval_command

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2)
    prompts = [f"Say something about {word}:" for word in ("tea", "rain", "maps", "salt")]
    greedy = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
        greedy.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).split("\n")[0])
    write_generation_task(tmp_path / "tasks", prompts, [*greedy[:2], "never 1", "never 2"])
    cfg = {"model_name_or_path": str(tiny_qwen2), "task_dir": str(tmp_path / "tasks"), "tasks": "tiny_gen"}
    record = eval_command(load_config({**cfg, "n_shot": 0, "batch_size": 3}))
    assert record["scores"][0]["metric"] == "exact_match"
    assert record["scores"][0]["overall"] == {"score": 0.5, "questions": 4}, greedy


def _train_on_answers(model_dir: Path, out: Path, tests: dict[str, list[dict[str, Any]]]) -> None:
    """LoRA (plus the tied embedding, which a random tiny model needs to learn) on every question's right letter."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq

    from train_helpers import IGNORE, tiny_config, tokenizer_of
    from tuneforge.train.sft import TrainData, run_sft

    tokenizer = tokenizer_of(model_dir)
    rows = []
    for subject, questions in tests.items():
        for row in questions:
            prompt = tokenizer.encode(MMLU_DESCRIPTION.format(subject) + mmlu_prompt(row), add_special_tokens=False)
            answer = tokenizer.encode(f" {LETTERS[row['answer']]}", add_special_tokens=False)
            rows.append({"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer})
    cfg = tiny_config(
        model_dir, out, additional_target="embed_tokens", learning_rate=1e-2, max_steps=40,
        lr_scheduler_type="constant", lora_dropout=0.0, logging_steps=10,
    )  # fmt: skip
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, padding=True)
    run_sft(cfg, TrainData(Dataset.from_list(rows), None, collator), tokenizer)


@pytest.mark.slow
def test_cli_eval_shows_the_trained_adapters_gain_over_its_base(tiny_qwen2: Path, tmp_path: Path) -> None:
    tests = write_mmlu_task(tmp_path / "tasks")
    _train_on_answers(tiny_qwen2, tmp_path / "adapter", tests)
    keys = [
        f"model_name_or_path={tiny_qwen2}",
        f"adapter_name_or_path={tmp_path / 'adapter'}",
        f"task_dir={tmp_path / 'tasks'}",
        "task=tiny_mmlu_test",
        "n_shot=0",
        "compare_with=base",
        f"save_dir={tmp_path / 'results'}",
    ]
    out = subprocess.run([sys.executable, "-m", "tuneforge.cli", "eval", *keys], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "delta" in out.stdout and "stem" in out.stdout and "chat template: not applied" in out.stdout
    record = json.loads((tmp_path / "results" / "results.json").read_text())
    tuned = record["scores"][0]["overall"]["score"]
    base = record["comparison"]["scores"][0]["overall"]["score"]
    assert tuned >= base + 0.4, (base, tuned)
    overall = next(row for row in record["comparison"]["delta"] if row["category"] == "overall")
    assert overall["delta"] == pytest.approx(tuned - base)
    assert record["model"]["adapters"][0]["sha256"] and not record["comparison"]["model"]["adapters"]
