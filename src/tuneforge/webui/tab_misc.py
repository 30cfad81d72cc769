"""The Evaluate, Chat and Export tabs: each drives an existing verb with the model bar's settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from tuneforge.webui.context import Context, error_message, message
from tuneforge.webui.eval_panel import build_eval_panel
from tuneforge.webui.media import KINDS, engine_kinds, upload_types
from tuneforge.webui.predict_panel import build_predict_panel
from tuneforge.webui.webchat import chat_updates, message_box


def build_eval_tab(ctx: Context, train: dict[str, Any]) -> None:
    """Evaluation data and interval for the next training run (`eval_dataset`, `eval_steps`), Predict, Benchmark."""
    lab = ctx.labels
    lab.add(gr.Markdown("eval.note", elem_id="tf-eval-note"), "eval.note", "value")
    with gr.Row():
        eval_dataset = lab.add(
            gr.Dropdown(
                [], multiselect=True, label="field.eval_dataset", elem_id="tf-eval-dataset", allow_custom_value=True
            ),
            "field.eval_dataset",
        )
        eval_steps = lab.add(
            gr.Number(value=None, precision=0, label="field.eval_steps", elem_id="tf-eval-steps"), "field.eval_steps"
        )
    ctx.form.update(eval_dataset=eval_dataset, eval_steps=eval_steps)
    train["dataset"].change(
        lambda names, d: gr.update(choices=_names(ctx, d)), [train["dataset"], train["dataset_dir"]], eval_dataset
    )
    build_predict_panel(ctx, eval_dataset)
    build_eval_panel(ctx)


def _names(ctx: Context, folder: str) -> list[str]:
    from tuneforge.webui.datasets import dataset_names

    try:
        return dataset_names(ctx.jail.resolve(folder))
    except Exception:
        return []


def build_chat_tab(ctx: Context) -> None:
    """Load the model bar's model (with its adapters) into the inference engine and chat, streaming."""
    lab = ctx.labels
    with gr.Row():
        load = lab.add(
            gr.Button("btn.load_model", variant="primary", elem_id="tf-btn-load-model"), "btn.load_model", "value"
        )
        unload = lab.add(gr.Button("btn.unload_model", elem_id="tf-btn-unload-model"), "btn.unload_model", "value")
    status = gr.Markdown(elem_id="tf-chat-status")
    chatbot = gr.Chatbot(height=360, elem_id="tf-chatbot")
    box = lab.add(gr.Textbox(label="chat.input", elem_id="tf-chat-input"), "chat.input")
    media_box = lab.add(  # shown instead of `box` while a model whose template has a media plugin is loaded
        message_box(KINDS, label="chat.input_media", elem_id="tf-chat-media-input", visible=False),
        "chat.input_media",
    )
    with lab.add(gr.Accordion("group.sampling", open=False), "group.sampling"):
        system = lab.add(gr.Textbox(label="field.default_system"), "field.default_system")
        temperature = lab.add(
            gr.Slider(0.0, 2.0, value=0.95, step=0.01, label="field.temperature"), "field.temperature"
        )
        top_p = lab.add(gr.Slider(0.01, 1.0, value=0.7, step=0.01, label="field.top_p"), "field.top_p")
        max_new = lab.add(gr.Slider(1, 2048, value=64, step=1, label="field.max_new_tokens"), "field.max_new_tokens")
    inputs = {*ctx.form.values(), ctx.lang}
    load.click(lambda data: _load_engine(ctx, data), inputs, [status, box, media_box])
    unload.click(lambda lang: _unload(ctx, lang), ctx.lang, [status, box, media_box])

    def chat(*args: Any) -> Iterator[tuple[Any, list[dict]]]:  # a generator function, so Gradio streams it
        yield from _chat(ctx, *args)

    for source in (box, media_box):
        source.submit(chat, [source, chatbot, system, temperature, top_p, max_new], [source, chatbot])


MODEL_KEYS = (
    "model_name_or_path",
    "adapter_name_or_path",
    "template",
    "finetuning_type",
    "quantization_bit",
    "rope_scaling",
    "flash_attn",
)


def _model_flat(ctx: Context, data: dict[Any, Any]) -> dict[str, Any]:
    """The model bar's keys of the form's config (paths checked, values validated)."""
    config = ctx.config({**ctx.values(data), "dataset": [], "eval_dataset": [], "output_dir": ""})
    return {k: config[k] for k in MODEL_KEYS if k in config}


def _model_config(ctx: Context, data: dict[Any, Any]) -> Any:
    from tuneforge.config import load_config

    return load_config(_model_flat(ctx, data))


def _load_engine(ctx: Context, data: dict[Any, Any]) -> tuple[str, Any, Any]:
    lang = data[ctx.lang]
    try:
        from tuneforge.infer import load_engine

        cfg = _model_config(ctx, data)
        with ctx.engine_lock:
            _close(ctx)
            ctx.engine = load_engine(cfg)
        kinds = engine_kinds(ctx.engine)
        text = message(lang, "msg.model_loaded", name=ctx.engine.model_name)
        if kinds:
            text += " " + message(lang, "msg.model_media", kinds=", ".join(kinds))
        return (text, *input_boxes(kinds))
    except Exception as err:
        return (error_message(lang, err), gr.update(), gr.update())


def input_boxes(kinds: tuple[str, ...]) -> tuple[Any, Any]:
    """Updates of (text box, multimodal box): the multimodal one, taking uploads of `kinds`, only when the
    loaded model's template has a media plugin."""
    if not kinds:
        return gr.update(visible=True), gr.update(visible=False)
    return gr.update(visible=False), gr.update(visible=True, file_types=upload_types(kinds))


def _close(ctx: Context) -> None:
    if ctx.engine is not None:
        ctx.engine.close(timeout=5)
        ctx.engine = None


def _unload(ctx: Context, lang: str) -> tuple[str, Any, Any]:
    with ctx.engine_lock:
        _close(ctx)
    return (message(lang, "msg.model_unloaded"), *input_boxes(()))


def _chat(ctx: Context, sent: str | dict, history: list[dict], *settings: Any) -> Iterator[tuple[Any, list[dict]]]:
    if ctx.engine is None:
        raise gr.Error("Load a model first (Chat tab: Load model).")
    yield from chat_updates(ctx.engine, sent, history, *settings)


def build_export_tab(ctx: Context) -> None:
    """Export the model bar's model (adapters merged) with `export_command`."""
    from tuneforge.config import field_info

    lab = ctx.labels
    with gr.Row():
        export_dir = lab.add(
            gr.Textbox(value="exports/model", label="field.export_dir", elem_id="tf-export-dir"),
            "field.export_dir",
            tooltip=field_info("export_dir").description,
        )
        export_format = lab.add(
            gr.Dropdown(["hf", "gguf"], value="hf", label="field.export_format", elem_id="tf-export-format"),
            "field.export_format",
            tooltip=field_info("export_format").description,
        )
        export_size = lab.add(
            gr.Number(value=5, precision=0, label="field.export_size", elem_id="tf-export-size"),
            "field.export_size",
            tooltip=field_info("export_size").description,
        )
    button = lab.add(gr.Button("btn.export", variant="primary", elem_id="tf-btn-export"), "btn.export", "value")
    status = gr.Markdown(elem_id="tf-export-status")
    inputs = {*ctx.form.values(), ctx.lang, export_dir, export_format, export_size}
    button.click(lambda data: _export(ctx, data, export_dir, export_format, export_size), inputs, status)


def _export(ctx: Context, data: dict[Any, Any], *widgets: Any) -> str:
    lang = data[ctx.lang]
    try:
        from tuneforge.config import load_config
        from tuneforge.export.runner import export_command

        out_dir, fmt, size = (data[w] for w in widgets)
        flat = {k: v for k, v in _model_flat(ctx, data).items() if k != "quantization_bit"}
        flat.update(export_dir=str(ctx.jail.resolve(out_dir)), export_format=fmt, export_size=int(size or 5))
        path = export_command(load_config(flat))
        return message(lang, "msg.exported", path=path)
    except Exception as err:
        return error_message(lang, err)
