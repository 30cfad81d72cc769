"""`webchat_command(cfg)`: a Gradio chat page on the inference engine.

Streaming answers, a system prompt box, sampling controls; the model's reasoning is shown in a collapsed
"Thinking" message above the answer. Gradio is an optional extra (`pip install 'tuneforge[webui]'`).
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


def _text(content: Any) -> str:
    """Message text from a Gradio message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, (list, tuple)):
        return "".join(_text(part) for part in content)
    return ""


def to_engine_messages(history: list[dict]) -> list[dict]:
    """Gradio chat history -> engine messages (thinking messages are dropped, as in training)."""
    out = []
    for message in history:
        metadata = message.get("metadata") or {}
        if metadata.get("title") == THINKING_TITLE:
            continue
        out.append({"role": message["role"], "content": _text(message.get("content"))})
    return out


def respond(
    engine: Any,
    message: str,
    history: list[dict],
    system: str = "",
    temperature: float = 0.95,
    top_p: float = 0.7,
    max_new_tokens: int = 512,
) -> Iterator[list[dict]]:
    """Stream the updated chat history while the model answers `message`."""
    if not message.strip():
        yield history
        return
    history = [*history, {"role": "user", "content": message}]
    messages = to_engine_messages(history)
    reasoning, content = "", ""
    overrides = {"temperature": temperature, "top_p": top_p, "max_new_tokens": int(max_new_tokens)}
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


def build_app(engine: Any, default_system: str | None = None) -> Any:
    """The Gradio Blocks page over `engine`."""
    require_gradio()
    import gradio as gr

    params = engine.defaults
    with gr.Blocks(title=f"tuneforge chat: {engine.model_name}") as app:
        gr.Markdown(f"### Chat with {markdown_literal(engine.model_name)}")
        chatbot = gr.Chatbot(label="Conversation", height=480)
        with gr.Row():
            box = gr.Textbox(placeholder="Type a message and press Enter", scale=4, show_label=False)
            clear = gr.Button("Clear", scale=1)
        with gr.Accordion("Settings", open=False):
            system = gr.Textbox(value=default_system or "", label="System prompt")
            temperature = gr.Slider(0.0, 2.0, value=params.temperature, step=0.01, label="Temperature")
            top_p = gr.Slider(0.01, 1.0, value=params.top_p, step=0.01, label="Top-p")
            max_new = gr.Slider(1, 4096, value=min(params.max_new_tokens, 4096), step=1, label="Max new tokens")

        def chat(message: str, history: list[dict], *settings: Any) -> Iterator[tuple[str, list[dict]]]:
            for updated in respond(engine, message, history or [], *settings):
                yield "", updated

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
