"""The web UI's Benchmark panel: the `tuneforge eval` config it starts, the table it shows, and (slow) a real
browser starting a benchmark job on a tiny local MMLU-layout task and seeing its score table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eval_helpers import write_mmlu_task
from tuneforge.webui import forms

pytest.importorskip("gradio")

from tuneforge.webui.context import Context
from tuneforge.webui.eval_panel import eval_config, result_rows

WIDGETS = {k: f"w_{k}" for k in ("tasks", "task_dir", "save_dir", "compare_with", "n_shot", "batch_size")}
WIDGETS.update(eval_limit="w_eval_limit", apply_chat_template="w_apply_chat_template")


def _data(ctx: Context, **values: object) -> dict:
    base = {f.key: forms.default_value(f) for f in forms.FIELDS}
    keys = [*base, "model_name_or_path", "adapter_name_or_path", "template", "dataset", "output_dir"]
    ctx.form = {key: key for key in keys}
    return {**base, **values}


def test_eval_config_keeps_the_model_keys_and_the_panel_settings(tmp_path: Path) -> None:
    ctx = Context.create(tmp_path)
    (tmp_path / "tasks").mkdir()
    data = _data(ctx, model_name_or_path="Qwen3-0.6B", adapter_name_or_path=["a1"], dataset=["d"], output_dir="o")
    data.update(w_tasks=" mmlu,gsm8k ", w_task_dir="tasks", w_save_dir="saves/e", w_compare_with="base")
    data.update(w_n_shot=0, w_batch_size=2, w_eval_limit=0, w_apply_chat_template=True)
    config = eval_config(ctx, data, WIDGETS)
    assert config["tasks"] == "mmlu,gsm8k" and config["compare_with"] == "base" and config["adapter_name_or_path"]
    assert config["task_dir"] == str(tmp_path / "tasks") and config["save_dir"] == str(tmp_path / "saves" / "e")
    assert (config["n_shot"], config["batch_size"], config["apply_chat_template"]) == (0, 2, True)
    assert not {"dataset", "output_dir", "learning_rate", "eval_limit"} & set(config)
    assert forms.validate(config).evaluation.n_shot == 0


def test_result_rows_show_categories_overall_and_the_comparison(tmp_path: Path) -> None:
    assert result_rows(tmp_path) == []
    score = {"task": "m", "metric": "acc", "categories": {"stem": {"score": 0.5, "questions": 2}}}
    score["overall"] = {"score": 0.75, "questions": 4}
    delta = [{"task": "m", "category": "stem", "base": 0.25, "tuned": 0.5, "delta": 0.25}]
    (tmp_path / "results.json").write_text(json.dumps({"scores": [score], "comparison": {"delta": delta}}))
    assert result_rows(tmp_path) == [["m", "stem", 2, 50.0, 25.0, "+25.00"], ["m", "overall", 4, 75.0, "", ""]]


def test_a_stopped_benchmark_job_reads_stopped_not_failed(tmp_path: Path) -> None:
    from tuneforge.webui.jobs import Job
    from tuneforge.webui.tab_train import progress_html

    ctx = Context.create(tmp_path)
    job = Job("j1", 2**22 + 1, str(tmp_path), str(tmp_path / "eval.yaml"), str(tmp_path / "eval.log"), 0.0, verb="eval")
    assert "ended without results" in progress_html(ctx, "en", job, [])
    job.stop_requested = 1.0
    assert "stopped (no results written)" in progress_html(ctx, "en", job, [])


@pytest.mark.slow
def test_browser_runs_a_benchmark_job_to_its_table_and_stops_another(tiny_qwen2: Path, tmp_path: Path) -> None:
    from webui_helpers import chromium_browser, fill, running_webui, shot, wait_text

    write_mmlu_task(tmp_path / "tasks")
    write_mmlu_task(tmp_path / "tasks", "big_mmlu", n=150)
    with (
        running_webui([tmp_path, tiny_qwen2.parent], tmp_path, tmp_path / "server.log") as url,
        chromium_browser() as b,
    ):
        page = b.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.wait_for_selector("#tf-model")
        fill(page, "tf-model", str(tiny_qwen2), enter=True)
        page.get_by_role("tab", name="Evaluate & Predict").click()
        fill(page, "tf-bench-tasks", "tiny_mmlu")
        fill(page, "tf-bench-task-dir", str(tmp_path / "tasks"))
        fill(page, "tf-bench-dir", "saves/bench")
        fill(page, "tf-bench-shots", "0")
        page.click("#tf-btn-bench")
        wait_text(page, "tf-bench-status", "started", 30)
        wait_text(page, "tf-bench-progress", "finished", 240)
        wait_text(page, "tf-bench-table", r"overall", 30)
        shot(page, "benchmark")
        table = page.locator("#tf-bench-table").inner_text()
        assert re.search(r"tiny_mmlu\s+stem", table) and "humanities" in table

        fill(page, "tf-bench-tasks", "big_mmlu")  # long enough to be stopped while it scores
        fill(page, "tf-bench-dir", "saves/bench-stop")
        page.click("#tf-btn-bench")
        wait_text(page, "tf-bench-status", "bench-stop", 30)
        wait_text(page, "tf-bench-progress", r"running · step [1-9]\d*/", 120)
        page.click("#tf-btn-bench-stop")
        wait_text(page, "tf-bench-status", "Job stopped|ends without writing results", 30)
        wait_text(page, "tf-bench-progress", "stopped", 60)
        shot(page, "benchmark_stopped")
    assert not (tmp_path / "saves" / "bench-stop" / "results.json").exists()
    record = json.loads((tmp_path / "saves" / "bench" / "results.json").read_text())
    assert record["scores"][0]["overall"]["questions"] == 16
