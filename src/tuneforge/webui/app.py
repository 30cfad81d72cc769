"""`tuneforge webui`: the browser UI that configures, runs and watches training, chat and export.

Every action drives an existing verb: training is a separate `tuneforge train` process (it keeps running when
the page closes; the page re-attaches on load), chat is the inference engine, export is `export_command`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from tuneforge.console import markdown_literal
from tuneforge.errors import TuneforgeError
from tuneforge.webui.context import Context, error_message, message
from tuneforge.webui.locale import DEFAULT_LANG, LANGS
from tuneforge.webui.webchat import require_gradio

logger = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_model_bar(ctx: Context) -> None:
    """Model, adapters, template (with the tokenizer check) and the model-level method settings."""
    import gradio as gr

    from tuneforge.data.templates import list_templates
    from tuneforge.webui import forms
    from tuneforge.webui.modelbar import picker_choices
    from tuneforge.webui.tab_train import field_component

    lab = ctx.labels
    with gr.Row():
        model = lab.add(
            gr.Dropdown(
                picker_choices(),
                value=None,
                allow_custom_value=True,
                label="field.model_name_or_path",
                elem_id="tf-model",
                scale=3,
            ),
            "field.model_name_or_path",
            tooltip=forms.description("model_name_or_path"),
        )
        adapters = lab.add(
            gr.Dropdown(
                [],
                multiselect=True,
                allow_custom_value=True,
                scale=3,
                label="field.adapter_name_or_path",
                elem_id="tf-adapters",
            ),
            "field.adapter_name_or_path",
            tooltip=forms.description("adapter_name_or_path"),
        )
        template = lab.add(
            gr.Dropdown(
                ["", "auto", *list_templates()], value="", label="field.template", elem_id="tf-template", scale=1
            ),
            "field.template",
            tooltip=forms.description("template"),
        )
        refresh = lab.add(gr.Button("btn.refresh", scale=0, elem_id="tf-btn-refresh"), "btn.refresh", "value")
    with gr.Row():
        for field in forms.FIELDS:
            if field.group == "model":
                field_component(ctx, field)
    note = gr.Markdown(elem_id="tf-template-note")
    ctx.form.update(model_name_or_path=model, adapter_name_or_path=adapters, template=template)
    model.change(lambda lang, m: _detect(ctx, lang, m), [ctx.lang, model], [model, template, note])
    template.change(lambda lang, m, tpl: _check(ctx, lang, m, tpl), [ctx.lang, model, template], note)
    refresh.click(lambda: _adapters(ctx), None, adapters)


def _local_model(ctx: Context, model: str) -> Path | None:
    from tuneforge.models.registry import find_model

    if not model or find_model(model):
        return None
    try:
        path = ctx.jail.resolve(model)
    except TuneforgeError:
        return None
    return path if path.is_dir() else None


def _detect(ctx: Context, lang: str, model: str) -> tuple[Any, Any, str]:
    """A registry model (picked or typed) becomes its hub id with its template; a local folder gets the template
    that fits its tokenizer."""
    import gradio as gr

    from tuneforge.data.mm import template_kinds
    from tuneforge.models.registry import find_model
    from tuneforge.webui.modelbar import load_local_tokenizer, suggest_template

    try:
        entry = find_model(model or "")
        path = None if entry else _local_model(ctx, model)
        tokenizer = load_local_tokenizer(path) if path else None
        template, notes = suggest_template(model, tokenizer)
        if entry:
            notes = [f"{entry.name}: {entry.hub} ({entry.family}, {entry.architecture}, {entry.size or '?'})"]
            if entry.multimodal:
                notes.append(f"multimodal: takes {', '.join(template_kinds(entry.template))}")
        text = message(lang, "msg.template_auto", template=template or "(tokenizer)")
        hub = gr.update(value=entry.hub) if entry and entry.hub != model else gr.update()
        return hub, gr.update(value=template), "\n\n".join([text, *map(markdown_literal, notes)])
    except Exception as err:
        return gr.update(), gr.update(), error_message(lang, err)


def _check(ctx: Context, lang: str, model: str, template: str) -> Any:
    """The note on a template chosen for a local model; for a hub model the note `_detect` wrote stays."""
    import gradio as gr

    from tuneforge.models.autotemplate import AUTO, pick_template
    from tuneforge.webui.modelbar import load_local_tokenizer, template_warnings

    path = _local_model(ctx, model)
    if path is None:
        return gr.update()
    if not template:
        return ""
    try:
        picked = pick_template(str(path))[0] if template == AUTO else template
        warnings = template_warnings(picked, load_local_tokenizer(path))
    except Exception as err:
        return error_message(lang, err)
    if not warnings:
        return message(lang, "msg.template_ok", template=f"{template} = {picked}" if picked != template else picked)
    return "\n\n".join(f"⚠️ {markdown_literal(w)}" for w in warnings)


def _adapters(ctx: Context) -> Any:
    import gradio as gr

    from tuneforge.webui.modelbar import find_adapters

    choices = [c for root in ctx.jail.roots for c in find_adapters(root)]
    return gr.update(choices=choices)


def build_ui(ctx: Context) -> Any:
    """The whole page."""
    require_gradio()
    import gradio as gr

    from tuneforge.webui.tab_data import build_data_tab
    from tuneforge.webui.tab_misc import build_chat_tab, build_eval_tab, build_export_tab
    from tuneforge.webui.tab_train import build_train_tab

    with gr.Blocks(title="tuneforge") as app:
        saved_lang = gr.BrowserState(DEFAULT_LANG, storage_key="tuneforge_webui_lang")
        with gr.Row():
            ctx.labels.add(gr.Markdown("app.title"), "app.title", "value")
            ctx.lang = gr.Dropdown(
                list(LANGS), value=DEFAULT_LANG, label="Language / 语言", elem_id="tf-lang", scale=0, min_width=140
            )
        build_model_bar(ctx)
        tabs = {}
        for name in ("train", "data", "eval", "chat", "export"):
            tabs[name] = ctx.labels.add(gr.Tab(f"tab.{name}", elem_id=f"tf-tab-{name}"), f"tab.{name}")
        with tabs["train"]:
            train = build_train_tab(ctx)
        with tabs["data"]:
            build_data_tab(ctx, train)
        with tabs["eval"]:
            build_eval_tab(ctx, train)
        with tabs["chat"]:
            build_chat_tab(ctx)
        with tabs["export"]:
            build_export_tab(ctx)
        _wire_page(ctx, app, saved_lang, train)
    return app


def _wire_page(ctx: Context, app: Any, saved_lang: Any, train: dict[str, Any]) -> None:
    """Language switch (remembered in the browser) and, on page load, re-attach to the latest job."""
    ctx.lang.change(lambda lang: [lang, *ctx.labels.updates(lang)], ctx.lang, [saved_lang, *ctx.labels.components])
    app.load(lambda lang: lang if lang in LANGS else DEFAULT_LANG, saved_lang, ctx.lang)
    from tuneforge.webui.tab_train import dataset_choices

    app.load(lambda folder: dataset_choices(ctx, folder), train["dataset_dir"], train["dataset"])
    outputs = [train["job_id"], train["status"], *ctx.form.values()]
    app.load(lambda lang: _reattach(ctx, lang), saved_lang, outputs)


def _reattach(ctx: Context, lang: str) -> list[Any]:
    """The latest job (running first) with the form filled from its config; the form as is when none."""
    import gradio as gr

    from tuneforge.webui.forms import config_to_form

    job = ctx.jobs.latest()
    if job is None:
        return ["", "", *[gr.update() for _ in ctx.form]]
    try:
        values = config_to_form(yaml.safe_load(Path(job.config_path).read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError):
        values = {}
    key = "msg.reattached" if ctx.jobs.is_running(job) else "msg.last_job"
    status = message(lang if lang in LANGS else DEFAULT_LANG, key, id=job.id, out=job.output_dir)
    return [job.id, status, *[_restore(ctx.form[k], values[k]) if k in values else gr.update() for k in ctx.form]]


def _restore(component: Any, value: Any) -> Any:
    """An update setting `value`; dropdowns also get it among their choices (custom paths, names)."""
    import gradio as gr

    if not isinstance(component, gr.Dropdown):
        return gr.update(value=value)
    known = [c[1] if isinstance(c, (tuple, list)) else c for c in component.choices or []]
    extra = [v for v in (value if isinstance(value, list) else [value]) if v not in known]
    return gr.update(value=value, choices=[*known, *extra])


def warm_imports() -> None:
    """Resolve transformers' lazy classes once before serving: handlers run in parallel threads, and a model load
    racing a tokenizer load (typing a model path, then pressing Load model at once) saw a half-imported
    transformers ("cannot import name 'AutoModelForCausalLM'")."""
    import transformers

    for name in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM", "AutoModelForImageTextToText"):
        getattr(transformers, name)


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """`user:pass` -> (user, pass); a clear error otherwise."""
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise TuneforgeError("--auth must be `user:password` (both non-empty).")
    return user, password


def webui_command(
    host: str = "127.0.0.1", port: int = 7860, auth: str | None = None, roots: list[str] | tuple[str, ...] = ()
) -> None:
    """`tuneforge webui`: serve the UI on host:port until interrupted; paths stay inside `roots` (default: cwd)."""
    require_gradio()
    credentials = parse_auth(auth)
    if host not in LOCAL_HOSTS and credentials is None:
        logger.warning("Serving on %s without --auth: anyone who can reach this port can run jobs.", host)
        print(f"warning: serving on {host} without --auth user:pass; anyone reaching it can start jobs.")
    ctx = Context.create(*(roots or (os.getcwd(),)))
    app = build_ui(ctx)
    warm_imports()
    app.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, auth=credentials, show_error=True, footer_links=[]
    )
