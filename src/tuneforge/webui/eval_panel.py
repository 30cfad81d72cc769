"""The Benchmark panel of the Evaluate & Predict tab: a `tuneforge eval` job (lm-evaluation-harness tasks) on the
model bar's model and adapters, run and watched like a training job (progress, log, stop), and its score table
per task and category once results.json is written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.webui import forms, monitor
from tuneforge.webui.context import Context, error_message, message
from tuneforge.webui.predict_panel import job_controls
from tuneforge.webui.tab_train import POLL_SECONDS, progress_html, stop_job

RESULTS_FILE = "results.json"
TABLE_COLUMNS = ["task", "category", "questions", "score %", "base %", "delta"]
# Sections of the config that describe the model to load (the rest of the form is about training).
MODEL_SECTIONS = ("model", "quantization")


def build_eval_panel(ctx: Context) -> None:
    """Benchmark settings, Evaluate / Stop buttons, live progress and the score table of the latest job."""
    lab = ctx.labels
    lab.add(gr.Markdown("bench.note", elem_id="tf-bench-note"), "bench.note", "value")
    with gr.Row():
        widgets = {
            "tasks": gr.Textbox("mmlu", label="field.bench_tasks", elem_id="tf-bench-tasks"),
            "task_dir": gr.Textbox("", label="field.task_dir", elem_id="tf-bench-task-dir"),
            "save_dir": gr.Textbox(
                f"saves/eval-{time.strftime('%Y%m%d-%H%M%S')}", label="field.bench_dir", elem_id="tf-bench-dir"
            ),
            "compare_with": gr.Textbox("", label="field.compare_with", elem_id="tf-bench-compare"),
        }
    with gr.Row():
        widgets.update(
            n_shot=gr.Number(5, precision=0, label="field.n_shot", elem_id="tf-bench-shots"),
            batch_size=gr.Number(4, precision=0, label="field.bench_batch", elem_id="tf-bench-batch"),
            eval_limit=gr.Number(0, precision=0, label="field.eval_limit", elem_id="tf-bench-limit"),
            apply_chat_template=gr.Checkbox(False, label="field.apply_chat_template", elem_id="tf-bench-chat"),
        )
    for widget in widgets.values():
        lab.add(widget, widget.label)  # the label is still the locale key here
    start, stop, status, job_id, progress, log = job_controls(ctx, "bench", "btn.bench")
    table = gr.Dataframe(headers=TABLE_COLUMNS, label=RESULTS_FILE, elem_id="tf-bench-table", wrap=True)
    inputs = {*ctx.form.values(), ctx.lang, *widgets.values()}
    start.click(lambda data: _start(ctx, data, widgets), inputs, [job_id, status])
    stop.click(lambda lang, j: stop_job(ctx, lang, j), [ctx.lang, job_id], [status])
    timer = gr.Timer(POLL_SECONDS)
    timer.tick(lambda lang, j: refresh(ctx, lang, j), [ctx.lang, job_id], [progress, log, table])


def eval_config(ctx: Context, data: dict[Any, Any], widgets: dict[str, Any]) -> dict[str, Any]:
    """The flat config of a benchmark run: the form's model keys and the panel's evaluation settings."""
    from tuneforge.config.root import field_section

    full = ctx.config(ctx.values(data))
    config = {k: v for k, v in full.items() if k == "template" or field_section(k) in MODEL_SECTIONS}
    settings = {key: data[widget] for key, widget in widgets.items()}
    for key in ("tasks", "task_dir", "compare_with"):
        if str(settings.get(key) or "").strip():
            config[key] = str(settings[key]).strip()
    if config.get("task_dir"):
        config["task_dir"] = str(ctx.jail.resolve(config["task_dir"]))
    config["save_dir"] = str(ctx.jail.resolve(str(settings["save_dir"]).strip() or "saves/eval"))
    config.update({k: int(settings[k]) for k in ("n_shot", "batch_size") if settings.get(k) is not None})
    if settings.get("eval_limit"):  # the number box shows 0 for "all"
        config["eval_limit"] = int(settings["eval_limit"])
    config["apply_chat_template"] = bool(settings.get("apply_chat_template"))
    forms.validate(config)
    return config


def _start(ctx: Context, data: dict[Any, Any], widgets: dict[str, Any]) -> tuple[Any, str]:
    lang = data[ctx.lang]
    try:
        config = eval_config(ctx, data, widgets)
        job = ctx.jobs.start(config, verb="eval")
        return job.id, message(lang, "msg.bench_started", id=job.id, pid=job.pid, out=job.output_dir)
    except Exception as err:
        return gr.skip(), error_message(lang, err)


def refresh(ctx: Context, lang: str, job_id: str) -> tuple[Any, Any, Any]:
    """Progress HTML and log tail of the benchmark job; its score table once results.json is written."""
    job = ctx.jobs.get(job_id) if job_id else None
    if job is None:
        return gr.skip(), gr.skip(), gr.skip()
    records = monitor.read_records(job.output_dir)
    rows = result_rows(job.output_dir)
    return progress_html(ctx, lang, job, records), monitor.log_tail(job.log_path), rows if rows else gr.skip()


def result_rows(save_dir: str | Path) -> list[list[Any]]:
    """Rows of TABLE_COLUMNS from results.json (empty until written); base and delta only when comparing."""
    path = Path(save_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    base = {(r["task"], r["category"]): r for r in record.get("comparison", {}).get("delta", [])}
    rows = []
    for task in record["scores"]:
        for category, score in [*task["categories"].items(), ("overall", task["overall"])]:
            compared = base.get((task["task"], category))
            rows.append(
                [
                    task["task"],
                    category,
                    score["questions"],
                    round(100 * score["score"], 2),
                    round(100 * compared["base"], 2) if compared else "",
                    f"{100 * compared['delta']:+.2f}" if compared else "",
                ]
            )
    return rows
