"""The chat page in a real browser (slow): an image attached in the upload box shows in the history and reaches the
engine as `media=`, and stays part of the conversation on the next turn (a fake engine answers with what it got)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from server_helpers import free_port
from tuneforge.data.templates import get_spec
from webui_helpers import chromium_browser, shot, wait_text

pytestmark = pytest.mark.slow


class _CountingEngine:
    """Answers with the number of images it was given and the user texts it saw."""

    model_name = "tiny-vl"

    def __init__(self) -> None:
        from tuneforge.infer.params import SamplingParams

        self.defaults, self.template = SamplingParams(), SimpleNamespace(spec=get_spec("qwen2_vl"))
        self.media: list[dict | None] = []

    def stream_chat(self, messages, system=None, media=None, **overrides):
        from tuneforge.infer.chat_stream import ChatDelta

        self.media.append(media)
        users = " | ".join(m["content"] for m in messages if m["role"] == "user").replace("<image>", "[image]")
        yield ChatDelta(
            content=f"{len((media or {}).get('images', []))} image(s); users: {users}", finish_reason="stop"
        )


def test_an_attached_image_shows_in_the_chat_and_reaches_the_engine(tmp_path: Path) -> None:
    from PIL import Image

    from tuneforge.webui.webchat import build_app

    image = tmp_path / "red.png"
    Image.new("RGB", (48, 48), "red").save(image)
    engine, port = _CountingEngine(), free_port()
    app = build_app(engine)
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    try:
        with chromium_browser() as browser:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#tf-webchat-input input[type=file]").set_input_files(str(image))
            page.locator("#tf-webchat-input img").first.wait_for(timeout=20000)  # the attachment's preview
            box = page.locator("#tf-webchat-input textarea").first
            box.fill("What colour?")
            box.press("Enter")
            wait_text(page, "tf-webchat", r"1 image\(s\); users: \[image\]What colour\?", 30)
            page.locator("#tf-webchat img").first.wait_for(timeout=10000)  # the image in the history
            box.fill("Sure?")
            box.press("Enter")
            wait_text(page, "tf-webchat", r"1 image\(s\); users: \[image\]What colour\? \| Sure\?", 30)
            shot(page, "webchat_upload")
    finally:
        app.close()
    first, second = engine.media
    assert len(first["images"]) == 1 and Path(first["images"][0]).read_bytes() == image.read_bytes()
    assert second == first  # the image stays with its message on the next turn
