"""The terminal chat (`chat_command`) through piped stdin, and the Gradio web chat's app and streaming."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tuneforge.infer.chat_cli import HELP, ChatSession, run_chat


class _FakeEngine:
    """Answers with a fixed reasoning + content stream and records what it was asked."""

    model_name = "fake"

    def __init__(self) -> None:
        from tuneforge.infer.params import SamplingParams

        self.defaults = SamplingParams()
        self.calls: list[tuple[list[dict], str | None]] = []

    def stream_chat(self, messages, system=None, **overrides):
        from tuneforge.infer.chat_stream import ChatDelta

        self.calls.append(([dict(m) for m in messages], system))
        yield ChatDelta(reasoning="hmm")
        yield ChatDelta(content="Hello")
        yield ChatDelta(content=" you", finish_reason="stop")


def test_chat_loop_history_clear_system_and_empty_lines():
    engine = _FakeEngine()
    stdin = io.StringIO("hi\n\n   \nagain\nclear\n/system Be brief\nnew\nexit\nnever read\n")
    stdout = io.StringIO()
    run_chat(engine, ChatSession(), stdin, stdout)
    first, second, third = engine.calls
    assert first == ([{"role": "user", "content": "hi"}], None)
    assert second[0][1] == {"role": "assistant", "content": "Hello you"} and len(second[0]) == 3
    assert third == ([{"role": "user", "content": "new"}], "Be brief")
    assert stdout.getvalue().count("Hello you") == 3


def test_chat_ends_on_eof():
    stdout = io.StringIO()
    run_chat(_FakeEngine(), ChatSession(), io.StringIO("hi\n"), stdout)
    assert stdout.getvalue().rstrip().endswith("Bye.")


def test_webchat_streams_and_keeps_thinking_collapsed():
    from tuneforge.webui.webchat import THINKING_TITLE, respond

    engine = _FakeEngine()
    updates = list(respond(engine, "hi", [], "sys", 0.5, 0.9, 16))
    assert len(updates) == 3
    final = updates[-1]
    assert final[1]["metadata"]["title"] == THINKING_TITLE and final[-1]["content"] == "Hello you"
    list(respond(engine, "more", final))
    assert engine.calls[-1][0] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello you"},
        {"role": "user", "content": "more"},
    ]


def test_webchat_blocks_app_builds():
    pytest.importorskip("gradio")
    from tuneforge.webui.webchat import build_app

    app = build_app(_FakeEngine(), "You are helpful.")
    assert type(app).__name__ == "Blocks" and app.fns


@pytest.mark.slow
def test_chat_command_through_stdin(tiny_qwen2):
    code = (
        "from tuneforge.config import load_config\n"
        "from tuneforge.infer.chat_cli import chat_command\n"
        f"chat_command(load_config({{'model_name_or_path': {str(tiny_qwen2)!r}, 'template': 'qwen',"
        " 'max_new_tokens': 6}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input="你好\n\nclear\nexit\n", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Assistant: ") == 1 and "History cleared." in result.stdout


class _MediaEngine(_FakeEngine):
    """A fake multimodal engine that takes images and records the media of each call."""

    media_kinds = ("images",)

    def stream_chat(self, messages, system=None, media=None, **overrides):
        from tuneforge.infer.chat_stream import ChatDelta

        self.calls.append(([dict(m) for m in messages], media))
        yield ChatDelta(content="A square", finish_reason="stop")


def test_image_command_attaches_to_the_next_message_and_stays_with_the_history(tmp_path):
    picture = tmp_path / "a.png"
    picture.write_bytes(b"png")
    engine = _MediaEngine()
    script = f"/image {picture}\nWhat is it?\nAnd again?\n/image {tmp_path}/none.png\n/audio {picture}\nclear\nhi\n"
    stdout = io.StringIO()
    run_chat(engine, ChatSession(), io.StringIO(script), stdout)
    (first, first_media), (second, second_media), (third, third_media) = engine.calls
    assert first == [{"role": "user", "content": "<image>What is it?"}] and first_media == {"images": [str(picture)]}
    assert second[1:] == [{"role": "assistant", "content": "A square"}, {"role": "user", "content": "And again?"}]
    assert second[0] == first[0] and second_media == {"images": [str(picture)]}
    assert third == [{"role": "user", "content": "hi"}] and third_media is None  # clear forgets the media too
    out = stdout.getvalue()
    assert "/image PATH attaches a file" in out and f"Attached {picture}" in out
    assert f"No such file: {tmp_path}/none.png" in out and "This model takes images, not audios." in out


def test_text_models_keep_their_help_and_refuse_attachments():
    engine, stdout = _FakeEngine(), io.StringIO()
    run_chat(engine, ChatSession(), io.StringIO("/image a.png\n"), stdout)
    assert stdout.getvalue().startswith(HELP + "\n")
    assert "This model is text-only: it takes no images." in stdout.getvalue() and not engine.calls


def test_a_refused_message_is_dropped_and_the_chat_goes_on():
    from tuneforge.errors import TuneforgeError

    class Refusing(_FakeEngine):
        def stream_chat(self, messages, system=None, **overrides):
            if "bad" in messages[-1]["content"]:
                raise TuneforgeError("Cannot attach the media")
            yield from super().stream_chat(messages, system, **overrides)

    engine, stdout = Refusing(), io.StringIO()
    run_chat(engine, ChatSession(), io.StringIO("bad\ngood\n"), stdout)
    assert "Error: Cannot attach the media" in stdout.getvalue()
    assert engine.calls[-1][0] == [{"role": "user", "content": "good"}]


def test_chat_command_names_a_missing_image_before_loading(tmp_path):
    from tuneforge.errors import TuneforgeError
    from tuneforge.infer.chat_cli import check_media_files

    with pytest.raises(TuneforgeError, match=r"--image .*none.png: no such file"):
        check_media_files({"images": [str(tmp_path / "none.png")]})
