"""The Predict panel of the Evaluate & Predict tab: a `tuneforge train` job with `do_predict` and
`predict_with_generate` on the chosen datasets with the model bar's model and adapters; its progress and log
(the Train tab's job and monitor code) and, when done, the metrics and the first generated rows."""

from __future__ import annotations

import json
import time
from itertools import islice
from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.webui import forms, monitor
from tuneforge.webui.context import Context, error_message, message
from tuneforge.webui.tab_train import POLL_SECONDS, progress_html, stop_job

PREDICTIONS_FILE = "generated_predictions.jsonl"
RESULTS_FILE = "predict_results.json"
SHOWN_ROWS = 5
ROW_COLUMNS = ["prompt", "predict", "label"]
# Keys of the training form that do not apply to a prediction run.
TRAINING_ONLY = ("eval_strategy", "eval_steps", "val_size", "do_train")


def build_predict_panel(ctx: Context, eval_dataset: Any) -> None:
    """Settings, Predict / Stop buttons, live progress and the results of the latest prediction job."""
    lab = ctx.labels
    lab.add(gr.Markdown("predict.note", elem_id="tf-predict-note"), "predict.note", "value")
    with gr.Row():
        widgets = {
            "output_dir": gr.Textbox(
                value=f"saves/predict-{time.strftime('%Y%m%d-%H%M%S')}",
                label="field.predict_dir",
                elem_id="tf-predict-output-dir",
            ),
            "max_samples": gr.Number(50, precision=0, label="field.predict_samples", elem_id="tf-predict-samples"),
            "max_new_tokens": gr.Number(128, precision=0, label="field.max_new_tokens", elem_id="tf-predict-max-new"),
            "per_device_eval_batch_size": gr.Number(
                8, precision=0, label="field.predict_batch", elem_id="tf-predict-batch"
            ),
            "do_sample": gr.Checkbox(False, label="field.do_sample", elem_id="tf-predict-do-sample"),
        }
    for widget in widgets.values():
        lab.add(widget, widget.label)  # the label is still the locale key here
    start, stop, status, job_id, progress, log = job_controls(ctx, "predict", "btn.predict")
    metrics = gr.JSON(label="predict_results.json", elem_id="tf-predict-metrics")
    rows = gr.Dataframe(headers=ROW_COLUMNS, label=PREDICTIONS_FILE, elem_id="tf-predict-rows", wrap=True)
    inputs = {*ctx.form.values(), ctx.lang, eval_dataset, *widgets.values()}
    start.click(lambda data: _start(ctx, data, eval_dataset, widgets), inputs, [job_id, status])
    stop.click(lambda lang, j: stop_job(ctx, lang, j), [ctx.lang, job_id], [status])
    timer = gr.Timer(POLL_SECONDS)
    timer.tick(lambda lang, j: refresh(ctx, lang, j), [ctx.lang, job_id], [progress, log, metrics, rows])


def job_controls(ctx: Context, name: str, button: str) -> tuple[Any, ...]:
    """Start / Stop buttons, status line, job id, progress bar and log box of a job panel (`tf-*-NAME` ids)."""
    lab = ctx.labels
    with gr.Row():
        start = lab.add(gr.Button(button, variant="primary", elem_id=f"tf-btn-{name}"), button, "value")
        stop = lab.add(gr.Button("btn.stop", elem_id=f"tf-btn-{name}-stop"), "btn.stop", "value")
    status = gr.Markdown(elem_id=f"tf-{name}-status")
    progress = gr.HTML(elem_id=f"tf-{name}-progress")
    log = gr.Textbox(lines=8, max_lines=8, elem_id=f"tf-{name}-log", autoscroll=True, show_label=False)
    return start, stop, status, gr.State(""), progress, log


def predict_config(ctx: Context, data: dict[Any, Any], eval_dataset: Any, widgets: dict[str, Any]) -> dict[str, Any]:
    """The flat config of a prediction run: the form's model and data settings, the chosen datasets as
    `eval_dataset` (else the training datasets), and the panel's settings."""
    values = ctx.values(data)
    chosen = data.get(eval_dataset) or values.get("dataset") or []
    settings = {key: data[widget] for key, widget in widgets.items()}
    config = ctx.config({**values, "dataset": [], "eval_dataset": chosen, "output_dir": settings.pop("output_dir")})
    for key in TRAINING_ONLY:
        config.pop(key, None)
    config.update(do_predict=True, predict_with_generate=True, do_sample=bool(settings.pop("do_sample", False)))
    config.update({key: int(value) for key, value in settings.items() if value})
    forms.validate(config)
    return config


def _start(ctx: Context, data: dict[Any, Any], eval_dataset: Any, widgets: dict[str, Any]) -> tuple[Any, str]:
    lang = data[ctx.lang]
    try:
        config = predict_config(ctx, data, eval_dataset, widgets)
        if not config.get("eval_dataset"):
            return gr.skip(), message(lang, "msg.pick_dataset", "warn")
        job = ctx.jobs.start(config)
        return job.id, message(lang, "msg.predict_started", id=job.id, pid=job.pid, out=job.output_dir)
    except Exception as err:
        return gr.skip(), error_message(lang, err)


def refresh(ctx: Context, lang: str, job_id: str) -> tuple[Any, Any, Any, Any]:
    """Progress HTML and log tail of the prediction job; its metrics and first rows once written."""
    job = ctx.jobs.get(job_id) if job_id else None
    if job is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    records = monitor.read_records(job.output_dir)
    metrics, rows = read_results(job.output_dir)
    return progress_html(ctx, lang, job, records), monitor.log_tail(job.log_path), metrics, rows


def read_results(output_dir: str | Path, limit: int = SHOWN_ROWS) -> tuple[dict[str, Any] | None, list[list[str]]]:
    """`predict_results.json` (None until written) and the first `limit` rows of the predictions file."""
    out = Path(output_dir)
    results = out / RESULTS_FILE
    if not results.is_file():
        return None, []
    rows = []
    with open(out / PREDICTIONS_FILE, encoding="utf-8") as handle:
        for line in islice(handle, limit):
            record = json.loads(line)
            rows.append([str(record.get(column, "")) for column in ROW_COLUMNS])
    return json.loads(results.read_text(encoding="utf-8")), rows
