"""`webchat_command(cfg)`: a Gradio chat page on the inference engine.

Streaming answers, a system prompt box, sampling controls; the model's reasoning is shown in a collapsed
"Thinking" message above the answer. A model whose template has a media plugin takes image (video, audio)
uploads: shown in the history, passed to the engine as `media=` with one mark per file in its message.
Gradio is an optional extra (`pip install 'tuneforge[webui]'`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tuneforge.console import markdown_literal
from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

THINKING_TITLE = "Thinking"


def require_gradio() -> None:
    """Raise a TuneforgeError naming the extra to install when Gradio is missing."""
    if importlib.util.find_spec("gradio") is None:
        raise TuneforgeError(
            "`tuneforge webchat` needs Gradio: pip install 'tuneforge[webui]' (or pip install gradio)."
        )


def _parts(content: Any) -> Iterator[tuple[str, str]]:
    """("text", text) and ("file", path) parts of a Gradio message content, in order (a string, a file dict, a
    normalized `{"type": ...}` part, or a list of those)."""
    if isinstance(content, str):
        yield "text", content
    elif isinstance(content, (list, tuple)):
        for part in content:
            yield from _parts(part)
    elif isinstance(content, dict):
        file = content.get("file") if isinstance(content.get("file"), dict) else content
        if file.get("path"):
            yield "file", str(file["path"])
        elif content.get("text") or content.get("value"):
            yield "text", str(content.get("text") or content.get("value"))


def _with_marks(text: str, files: list[str], media: dict[str, list[str]]) -> str:
    """`text` with one `<image>`/`<video>`/`<audio>` mark per attached file in front (marks the user already
    typed count), the files added to `media` in order."""
    from tuneforge.data.media import MARKS
    from tuneforge.webui.media import file_kind

    added = {kind: 0 for kind in MARKS}
    for path in files:
        kind = file_kind(path)
        media.setdefault(kind, []).append(path)
        added[kind] += 1
    prefix = "".join(MARKS[kind] * max(0, n - text.count(MARKS[kind])) for kind, n in added.items())
    return prefix + text


def engine_request(history: list[dict]) -> tuple[list[dict], dict[str, list[str]]]:
    """Gradio chat history -> (engine messages, media per kind): thinking messages are dropped (as in training);
    a user message's attachments become marks at its start and paths in the media dict, in order."""
    out: list[dict] = []
    media: dict[str, list[str]] = {}
    for message in history:
        metadata = message.get("metadata") or {}
        if metadata.get("title") == THINKING_TITLE:
            continue
        parts = list(_parts(message.get("content")))
        text = "".join(value for kind, value in parts if kind == "text")
        files = [value for kind, value in parts if kind == "file"]
        if files and message["role"] == "user":
            text = _with_marks(text, files, media)
        if out and out[-1]["role"] == message["role"] == "user" and _only_marks(out[-1]["content"]):
            out[-1]["content"] += text  # an attachment shown as its own message, before its text
        else:
            out.append({"role": message["role"], "content": text})
    return out, media


def _only_marks(text: str) -> bool:
    from tuneforge.data.media import MARKS

    for mark in MARKS.values():
        text = text.replace(mark, "")
    return not text.strip()


def to_engine_messages(history: list[dict]) -> list[dict]:
    """Gradio chat history -> engine messages (thinking messages are dropped, as in training)."""
    return engine_request(history)[0]


def _user_message(message: str | dict) -> dict | None:
    """The history entry of what the user sent (text, or a multimodal box's `{"text", "files"}`); None if empty."""
    if isinstance(message, dict):
        text, files = str(message.get("text") or ""), [str(f) for f in message.get("files") or []]
    else:
        text, files = message or "", []
    if not text.strip() and not files:
        return None
    if not files:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [*({"path": f} for f in files), *([text] if text else [])]}


def check_media(engine: Any, media: dict[str, list[str]], earlier: bool = False) -> None:
    """Refuse media the loaded model cannot take, naming its template and media plugin (`earlier`: they were
    attached to earlier messages of the conversation)."""
    from tuneforge.webui.media import refusal

    reason = refusal(engine, {k for k, v in media.items() if v}) if media else None
    if reason:
        hint = " The conversation holds attachments from before: press Clear to start a new one." if earlier else ""
        raise TuneforgeError(reason + hint)


def respond(
    engine: Any,
    message: str | dict,
    history: list[dict],
    system: str = "",
    temperature: float = 0.95,
    top_p: float = 0.7,
    max_new_tokens: int = 512,
) -> Iterator[list[dict]]:
    """Stream the updated chat history while the model answers `message` (a text, or `{"text", "files"}` with
    attached images/videos/audios, passed to the engine as `media=`)."""
    sent = _user_message(message)
    if sent is None:
        yield history
        return
    history = [*history, sent]
    messages, media = engine_request(history)
    check_media(engine, media, earlier=not isinstance(message, dict) or not message.get("files"))
    reasoning, content = "", ""
    overrides: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "max_new_tokens": int(max_new_tokens)}
    if media:
        overrides["media"] = media
    for delta in engine.stream_chat(messages, system=system or None, **overrides):
        reasoning += delta.reasoning
        content += delta.content
        yield history + _answer_messages(reasoning, content)


def _answer_messages(reasoning: str, content: str) -> list[dict]:
    out = []
    if reasoning:
        out.append({"role": "assistant", "content": reasoning, "metadata": {"title": THINKING_TITLE, "status": "done"}})
    out.append({"role": "assistant", "content": content})
    return out


def chat_updates(engine: Any, message: str | dict, history: list[dict], *settings: Any) -> Iterator[tuple[Any, list]]:
    """(cleared input box, updated history) while the model answers; a refusal (media the model cannot take)
    becomes a Gradio error message, the box and history left as they were."""
    import gradio as gr

    cleared = {"text": "", "files": []} if isinstance(message, dict) else ""
    try:
        for updated in respond(engine, message, history or [], *settings):
            yield cleared, updated
    except TuneforgeError as err:
        raise gr.Error(str(err)) from err


def message_box(kinds: tuple[str, ...], **kwargs: Any) -> Any:
    """The input box: a multimodal one taking uploads of `kinds` (images, videos, audios), or a text box."""
    import gradio as gr

    from tuneforge.webui.media import upload_types

    if not kinds:
        return gr.Textbox(**kwargs)
    return gr.MultimodalTextbox(file_types=upload_types(kinds), file_count="multiple", **kwargs)


def build_app(engine: Any, default_system: str | None = None) -> Any:
    """The Gradio Blocks page over `engine`; it takes uploads of the media its template's plugin takes."""
    require_gradio()
    import gradio as gr

    from tuneforge.webui.media import engine_kinds

    params = engine.defaults
    kinds = engine_kinds(engine)
    hint = f"Type a message, attach {', '.join(kinds)} and press Enter" if kinds else "Type a message and press Enter"
    with gr.Blocks(title=f"tuneforge chat: {engine.model_name}") as app:
        gr.Markdown(f"### Chat with {markdown_literal(engine.model_name)}")
        chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="tf-webchat")
        with gr.Row():
            box = message_box(kinds, placeholder=hint, scale=4, show_label=False, elem_id="tf-webchat-input")
            clear = gr.Button("Clear", scale=1)
        with gr.Accordion("Settings", open=False):
            system = gr.Textbox(value=default_system or "", label="System prompt")
            temperature = gr.Slider(0.0, 2.0, value=params.temperature, step=0.01, label="Temperature")
            top_p = gr.Slider(0.01, 1.0, value=params.top_p, step=0.01, label="Top-p")
            max_new = gr.Slider(1, 4096, value=min(params.max_new_tokens, 4096), step=1, label="Max new tokens")

        def chat(message: str | dict, history: list[dict], *settings: Any) -> Iterator[tuple[Any, list[dict]]]:
            yield from chat_updates(engine, message, history, *settings)

        box.submit(chat, [box, chatbot, system, temperature, top_p, max_new], [box, chatbot])
        clear.click(lambda: [], None, chatbot)
    return app


def webchat_command(cfg: TuneforgeConfig) -> None:
    """`tuneforge webchat CONFIG`: serve the chat page (Gradio's default 127.0.0.1:7860) until interrupted."""
    require_gradio()
    from tuneforge.infer import load_engine

    engine = load_engine(cfg)
    try:
        build_app(engine, cfg.data.default_system).queue().launch()
    finally:
        engine.close(timeout=5)
