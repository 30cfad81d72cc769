"""The Train tab: dataset choice and preview, hyper-parameters in groups, Preview / Save / Load / Start / Stop,
and the live view of the running job (progress, loss curve, log tail) refreshed by a timer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from tuneforge.webui import forms, monitor
from tuneforge.webui.context import Context, error_message, message
from tuneforge.webui.datasets import dataset_names, raw_rows, rows_media, token_preview_html
from tuneforge.webui.locale import t
from tuneforge.webui.vscode import debug_config_command

POLL_SECONDS = 2.0


def field_component(ctx: Context, field: forms.FormField) -> Any:
    """The widget of one form field, registered under its key and labelled from the locale."""
    value, key = forms.default_value(field), f"field.{field.key}"
    if field.kind == "choice":
        comp = gr.Dropdown(list(field.choices), value=str(value), label=key, elem_id=f"tf-{field.key}")
    elif field.kind == "check":
        comp = gr.Checkbox(value=value, label=key, elem_id=f"tf-{field.key}")
    elif field.kind in ("int", "float"):
        comp = gr.Number(
            value=value if value != "" else None,
            label=key,
            elem_id=f"tf-{field.key}",
            precision=0 if field.kind == "int" else None,
        )
    else:
        comp = gr.Textbox(value=value, label=key, elem_id=f"tf-{field.key}")
    ctx.form[field.key] = ctx.labels.add(comp, key, tooltip=forms.description(field.key))
    return comp


def group_fields(ctx: Context, group: str) -> None:
    """Widgets of every field in `group`, three to a row."""
    fields = [f for f in forms.FIELDS if f.group == group]
    for start in range(0, len(fields), 3):
        with gr.Row():
            for field in fields[start : start + 3]:
                field_component(ctx, field)


def build_train_tab(ctx: Context) -> dict[str, Any]:
    """Lay out the Train tab and wire its events; returns components other tabs use."""
    lab = ctx.labels
    with gr.Row():
        dataset_dir = lab.add(
            gr.Textbox(value="data", label="field.dataset_dir", elem_id="tf-dataset-dir"), "field.dataset_dir"
        )
        dataset = lab.add(
            gr.Dropdown([], multiselect=True, label="field.dataset", elem_id="tf-dataset", allow_custom_value=True),
            "field.dataset",
        )
        output_dir = lab.add(
            gr.Textbox(
                value=f"saves/run-{time.strftime('%Y%m%d-%H%M%S')}", label="field.output_dir", elem_id="tf-output-dir"
            ),
            "field.output_dir",
        )
    ctx.form.update(dataset_dir=dataset_dir, dataset=dataset, output_dir=output_dir)
    with lab.add(gr.Accordion("group.preview_data", open=False), "group.preview_data"):
        preview_data_btn = lab.add(gr.Button("btn.preview_data"), "btn.preview_data", "value")
        raw_view = gr.JSON(label="raw", elem_id="tf-raw-rows")
        gallery, media_list = media_view(ctx, "tf-preview")
        token_view = gr.HTML(elem_id="tf-token-preview")
    group_fields(ctx, "main")
    for group in forms.GROUPS[2:]:  # model and main are laid out above
        with lab.add(gr.Accordion(f"group.{group}", open=False), f"group.{group}"):
            group_fields(ctx, group)
    with gr.Row():
        buttons = {
            name: lab.add(
                gr.Button(
                    f"btn.{name}", elem_id=f"tf-btn-{name}", variant="primary" if name == "start" else "secondary"
                ),
                f"btn.{name}",
                "value",
            )
            for name in ("preview", "save", "load", "vscode", "start", "stop")
        }
    args_path = lab.add(
        gr.Textbox(value="train_args.yaml", label="field.args_path", elem_id="tf-args-path"), "field.args_path"
    )
    status = gr.Markdown(elem_id="tf-train-status")
    command = gr.Code(language="yaml", label="YAML", elem_id="tf-command", visible=True)
    live = _live_view(ctx)
    job_id = gr.State("")
    _wire(ctx, locals(), buttons, live)
    return {
        "dataset_dir": dataset_dir,
        "dataset": dataset,
        "output_dir": output_dir,
        "job_id": job_id,
        "live": live,
        "status": status,
    }


def media_view(ctx: Context, prefix: str) -> tuple[Any, Any]:
    """A gallery of the previewed rows' images and a list of every row's media files (hidden until filled)."""
    gallery = ctx.labels.add(
        gr.Gallery(
            label="data.media", columns=6, height=200, object_fit="contain", visible=False, elem_id=f"{prefix}-gallery"
        ),
        "data.media",
    )
    return gallery, gr.Markdown(elem_id=f"{prefix}-media")


def media_updates(gallery: list, names: str) -> tuple[Any, Any]:
    """Updates of `media_view`'s components: the gallery shown only when there are images."""
    return gr.update(value=gallery or None, visible=bool(gallery)), names


def _live_view(ctx: Context) -> dict[str, Any]:
    progress = gr.HTML(elem_id="tf-progress")
    with gr.Row():
        plot = gr.LinePlot(x="step", y="loss", color="series", elem_id="tf-loss-plot", height=300)
        log = gr.Textbox(lines=12, max_lines=12, elem_id="tf-log", autoscroll=True, show_label=False)
    return {"progress": progress, "plot": plot, "log": log, "timer": gr.Timer(POLL_SECONDS)}


def _wire(ctx: Context, c: dict[str, Any], buttons: dict[str, Any], live: dict[str, Any]) -> None:
    inputs = {*ctx.form.values(), ctx.lang}
    c["dataset_dir"].change(lambda d: dataset_choices(ctx, d), c["dataset_dir"], c["dataset"])
    c["preview_data_btn"].click(
        lambda data: _preview_data(ctx, data),
        inputs,
        [c["raw_view"], c["gallery"], c["media_list"], c["token_view"], c["status"]],
    )
    buttons["preview"].click(lambda data: _preview(ctx, data), inputs, [c["command"], c["status"]])
    buttons["save"].click(lambda data: _save(ctx, data, data[c["args_path"]]), {*inputs, c["args_path"]}, [c["status"]])
    form_keys = list(ctx.form)
    buttons["load"].click(
        lambda lang, p: _load(ctx, lang, p, form_keys), [ctx.lang, c["args_path"]], [*ctx.form.values(), c["status"]]
    )
    buttons["vscode"].click(lambda data: _vscode(ctx, data), inputs, [c["status"]])
    buttons["start"].click(lambda data: _start(ctx, data), inputs, [c["job_id"], c["status"]])
    buttons["stop"].click(lambda lang, j: stop_job(ctx, lang, j), [ctx.lang, c["job_id"]], [c["status"]])
    outputs = [live["progress"], live["plot"], live["log"]]
    live["timer"].tick(lambda lang, j: refresh(ctx, lang, j), [ctx.lang, c["job_id"]], outputs)


def dataset_choices(ctx: Context, folder: str) -> Any:
    """The dataset dropdown's choices: the names registered in `folder` (none when it is unreadable)."""
    try:
        return gr.update(choices=dataset_names(ctx.jail.resolve(folder)))
    except Exception:
        return gr.update(choices=[])


def _preview_data(ctx: Context, data: dict[Any, Any]) -> tuple[Any, ...]:
    """Raw rows, their media (thumbnails, file names), the encoded samples and a status line."""
    lang = data[ctx.lang]
    rows, media = None, media_updates([], "")  # what was read stays shown when a later step fails
    try:
        config = ctx.config(ctx.values(data))
        names = [n.strip() for n in config.get("dataset", "").split(",") if n.strip()]
        if not names:
            return None, *media, "", message(lang, "msg.pick_dataset", "warn")
        rows = raw_rows(config["dataset_dir"], names[0], 3)
        media = media_updates(*rows_media(config["dataset_dir"], names[0], rows, config.get("media_dir")))
        return rows, *media, _token_preview(config), message(lang, "msg.previewed", name=names[0])
    except Exception as err:
        return rows, *media, "", error_message(lang, err)


def _token_preview(config: dict[str, Any]) -> str:
    from tuneforge.data.preview import preview_command
    from tuneforge.models.loader import load_tokenizer

    cfg = forms.validate({**config, "max_samples": 3})
    tokenizer = load_tokenizer(cfg)
    return token_preview_html(preview_command(cfg, 3, tokenizer=tokenizer), tokenizer)


def _preview(ctx: Context, data: dict[Any, Any]) -> tuple[str, str]:
    lang = data[ctx.lang]
    try:
        return forms.command_preview(ctx.config(ctx.values(data))), message(lang, "msg.config_ok")
    except Exception as err:
        return "", error_message(lang, err)


def _save(ctx: Context, data: dict[Any, Any], args_path: str) -> str:
    lang = data[ctx.lang]
    try:
        path = ctx.jail.resolve(args_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(forms.to_yaml(ctx.config(ctx.values(data))), encoding="utf-8")
        return message(lang, "msg.saved", path=path)
    except Exception as err:
        return error_message(lang, err)


def _load(ctx: Context, lang: str, path: str, keys: list[str]) -> list[Any]:
    try:
        config = yaml.safe_load(ctx.jail.resolve(path).read_text(encoding="utf-8")) or {}
        values = forms.config_to_form(config)
        updates = [gr.update(value=values[k]) if k in values else gr.update() for k in keys]
        return [*updates, message(lang, "msg.loaded", path=path)]
    except Exception as err:
        return [*[gr.update() for _ in keys], error_message(lang, err)]


def _vscode(ctx: Context, data: dict[Any, Any]) -> str:
    lang = data[ctx.lang]
    try:
        config = ctx.config(ctx.values(data))
        path = ctx.state_dir / "debug" / f"{Path(config['output_dir']).name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(forms.to_yaml(config), encoding="utf-8")
        return message(lang, "msg.vscode", path=debug_config_command(path, ctx.jail.home))
    except Exception as err:
        return error_message(lang, err)


def _start(ctx: Context, data: dict[Any, Any]) -> tuple[str, str]:
    lang = data[ctx.lang]
    try:
        job = ctx.jobs.start(ctx.config(ctx.values(data)))
        return job.id, message(lang, "msg.started", id=job.id, pid=job.pid, out=job.output_dir)
    except Exception as err:
        return gr.skip(), error_message(lang, err)


def stop_job(ctx: Context, lang: str, job_id: str) -> str:
    """Ask a running job to stop (SIGINT, then SIGTERM on a second press); the status message to show."""
    job = ctx.jobs.get(job_id) if job_id else None
    if job is None:
        return message(lang, "msg.no_job", "warn")
    ended = ctx.jobs.stop(job, wait=5.0)
    stopping = "msg.bench_stopping" if job.verb == "eval" else "msg.stopping"  # a benchmark saves nothing
    return message(lang, "msg.stopped" if ended else stopping, pid=job.pid)


def refresh(ctx: Context, lang: str, job_id: str) -> tuple[Any, Any, Any]:
    """Progress HTML, loss frame and log tail of the job (no change when there is none)."""
    job = ctx.jobs.get(job_id) if job_id else None
    if job is None:
        return gr.skip(), gr.skip(), gr.skip()
    records = monitor.read_records(job.output_dir)
    return progress_html(ctx, lang, job, records), monitor.loss_frame(records), monitor.log_tail(job.log_path)


def progress_html(ctx: Context, lang: str, job: Any, records: list[dict[str, Any]]) -> str:
    """A progress bar with step, ETA, loss, tokens/s and the job's state."""
    p = monitor.progress(records)
    state = _state(ctx, lang, job)
    parts = [t(lang, "live.step", step=p["step"], total=p["total"] or "?")]
    if p.get("remaining") and ctx.jobs.is_running(job):
        parts.append(t(lang, "live.eta", eta=p["remaining"]))
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.4f}")
    if p.get("tokens_per_sec") is not None:
        parts.append(f"{p['tokens_per_sec']:,.0f} tok/s")
    if p.get("gpu_mem") is not None:
        parts.append(f"GPU {p['gpu_mem']:.2f} GiB")
    return (
        f"<div><b>{job.id}</b> · <span id='tf-job-state'>{state}</span> · {' · '.join(parts)}</div>"
        f"<progress max='100' value='{p['percent']}' style='width:100%'></progress>"
    )


def _state(ctx: Context, lang: str, job: Any) -> str:
    if ctx.jobs.is_running(job):
        return t(lang, "state.stopping" if job.stop_requested else "state.running")
    if monitor.finished(job.output_dir):
        return t(lang, "state.stopped" if job.stop_requested else "state.finished")
    if job.verb == "eval" and job.stop_requested:  # a stopped benchmark ends without results.json
        return t(lang, "state.bench_stopped")
    code = ctx.jobs.returncode(job)
    return t(lang, "state.failed", code="?" if code is None else code)
