"""The Data tab: turn a CSV / JSON / JSONL / Excel file into a registered dataset without code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.webui.context import Context, error_message, message
from tuneforge.webui.datasets import (
    MAPPABLE,
    MEDIA_KEYS,
    build_entry,
    check_columns,
    read_table,
    register_dataset,
    role_tags,
)
from tuneforge.webui.media import missing_media, preview_media
from tuneforge.webui.tab_train import media_updates, media_view

MAP_KEYS = ("prompt", "query", "response", "system", "history", "messages", "tools", "images", "videos", "audios")


def build_data_tab(ctx: Context, train: dict[str, Any]) -> None:
    """Lay out the Data tab; registering refreshes the Train tab's dataset choices."""
    lab = ctx.labels
    with gr.Row():
        upload = lab.add(
            gr.File(
                label="data.upload", file_types=[".csv", ".json", ".jsonl", ".xlsx", ".xls"], elem_id="tf-data-upload"
            ),
            "data.upload",
        )
        path = lab.add(gr.Textbox(label="data.path", elem_id="tf-data-path"), "data.path")
    read_btn = lab.add(gr.Button("btn.read_file", elem_id="tf-btn-read"), "btn.read_file", "value")
    table = gr.Dataframe(interactive=False, elem_id="tf-data-table", max_height=260)
    gallery, media_list = media_view(ctx, "tf-data")
    formatting = lab.add(
        gr.Radio(list(MAPPABLE), value="alpaca", label="data.formatting", elem_id="tf-data-formatting"),
        "data.formatting",
    )
    with gr.Row():
        mapping = {
            key: lab.add(gr.Dropdown([], label=f"data.col.{key}", elem_id=f"tf-map-{key}"), f"data.col.{key}")
            for key in MAP_KEYS
        }
    with gr.Row():
        name = lab.add(gr.Textbox(label="data.name", elem_id="tf-data-name"), "data.name")
        overwrite = lab.add(gr.Checkbox(False, label="data.overwrite", elem_id="tf-data-overwrite"), "data.overwrite")
        register_btn = lab.add(
            gr.Button("btn.register", variant="primary", elem_id="tf-btn-register"), "btn.register", "value"
        )
    status = gr.Markdown(elem_id="tf-data-status")

    read_btn.click(
        lambda lang, up, p, d: _read(ctx, lang, up, p, d),
        [ctx.lang, upload, path, train["dataset_dir"]],
        [table, gallery, media_list, formatting, *mapping.values(), status],
    )
    inputs = [ctx.lang, upload, path, formatting, name, overwrite, train["dataset_dir"], *mapping.values()]
    register_btn.click(lambda *a: _register(ctx, *a), inputs, [status, train["dataset"]])


def _source(ctx: Context, upload: Any, path: str) -> str:
    """The uploaded file (Gradio's temporary copy), else the typed path checked against the roots."""
    if upload:
        return upload if isinstance(upload, str) else upload.name
    return str(ctx.jail.resolve(path))


def _read(ctx: Context, lang: str, upload: Any, path: str, dataset_dir: str) -> list[Any]:
    """The table's first rows, their media (thumbnails, file names) and column guesses for the mapping."""
    blank = [gr.update() for _ in MAP_KEYS]
    try:
        source = _source(ctx, upload, path)
        frame = read_table(source)
        columns = ["", *map(str, frame.columns)]
        guesses = _guess(columns)
        # media paths are relative to the file's folder; an upload's (a temporary copy) to the dataset folder
        root = ctx.jail.resolve(dataset_dir) if upload else Path(source).parent
        rows = frame.head(5).to_dict(orient="records")
        media = media_updates(*preview_media(rows, {k: guesses.get(k) for k in MEDIA_KEYS}, root))
    except Exception as err:
        return [None, *media_updates([], ""), gr.update(), *blank, error_message(lang, err)]
    updates = [gr.update(choices=columns, value=guesses.get(key, "")) for key in MAP_KEYS]
    read = message(lang, "msg.read_rows", rows=len(frame), cols=len(frame.columns))
    chats = "messages" in guesses and "prompt" not in guesses  # a conversation table: sharegpt
    return [_shown(frame.head(5)), *media, gr.update(value="sharegpt") if chats else gr.update(), *updates, read]


def _shown(frame: Any) -> Any:
    """The rows for the table view: lists and objects (conversations, media lists) as JSON text, not `[object]`."""
    import json

    return frame.map(lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v)


def _guess(columns: list[str]) -> dict[str, str]:
    """Pre-select columns whose names already say what they are."""
    names = {
        "prompt": ("instruction", "prompt", "question"),
        "query": ("input", "query"),
        "response": ("output", "response", "answer"),
        "system": ("system",),
        "history": ("history",),
        "messages": ("conversations", "messages"),
        "tools": ("tools",),
        "images": ("images", "image"),
        "videos": ("videos", "video"),
        "audios": ("audios", "audio"),
    }
    lower = {c.lower(): c for c in columns if c}
    return {key: lower[n] for key, options in names.items() for n in options if n in lower}


def _register(
    ctx: Context,
    lang: str,
    upload: Any,
    path: str,
    formatting: str,
    name: str,
    overwrite: bool,
    dataset_dir: str,
    *columns: str,
) -> tuple[str, Any]:
    try:
        source = _source(ctx, upload, path)
        mapping = dict(zip(MAP_KEYS, columns, strict=True))
        frame = read_table(source)
        check_columns(frame, mapping)
        entry = build_entry("", formatting, mapping)
        if formatting == "sharegpt" and (tags := role_tags(frame, mapping.get("messages"))):
            entry["tags"] = tags
        folder = ctx.jail.resolve(dataset_dir)
        registry = register_dataset(folder, (name or "").strip(), source, entry, overwrite=bool(overwrite))
        from tuneforge.webui.datasets import dataset_names

        status = message(lang, "msg.registered", name=name, path=registry) + _media_note(lang, source, mapping, folder)
        return status, gr.update(choices=dataset_names(folder))
    except Exception as err:
        return error_message(lang, err), gr.update()


def _media_note(lang: str, source: str, mapping: dict[str, str], folder: Path) -> str:
    """A warning when media files of the registered table are not found from the dataset folder (training
    resolves relative paths there, or under `media_dir`)."""
    columns = {kind: mapping.get(kind) for kind in MEDIA_KEYS}
    if not any(columns.values()):
        return ""
    missing = missing_media(read_table(source).to_dict(orient="records"), columns, folder)
    if not missing:
        return ""
    return "\n\n" + message(lang, "msg.media_missing", "warn", count=len(missing), folder=folder, first=missing[0])
