"""Media content parts in /v1/chat/completions: data: URLs, http(s) URLs, input_audio, local paths only inside
`api_media_dir`, clear 400s for bad parts, temporary files removed."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from media_helpers import square_image
from tuneforge.serve.app import create_app
from tuneforge.serve.deps import ServerSettings

GREEDY = {"temperature": 0, "max_tokens": 6}


@pytest.fixture(scope="module")
def red(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "red.png"
    square_image(path, (255, 0, 0), size=56)
    return path


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def ask(*parts: dict) -> dict:
    return {"messages": [{"role": "user", "content": list(parts)}], **GREEDY}


def post(engine, body: dict, **settings) -> tuple[int, dict]:
    app = create_app(engine, ServerSettings(model_name="vl", **settings), close_engine=False)
    response = TestClient(app).post("/v1/chat/completions", json=body)
    return response.status_code, response.json()


def answer(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the request's temporary media folders go (checked empty afterwards)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_a_data_url_image_answers_as_the_engine_with_the_file(tiny_vlm_engine, red, temp_root):
    text = {"type": "text", "text": "What colour?"}
    status, body = post(tiny_vlm_engine, ask(text, image_part(data_url(red))))
    assert status == 200, body
    question = [{"role": "user", "content": "What colour?<image>"}]  # the mark stands where the part stood
    expected = tiny_vlm_engine.chat(question, media={"images": [str(red)]}, temperature=0, max_new_tokens=6)
    assert answer(body) == expected.content
    assert body["usage"]["prompt_tokens"] == expected.prompt_tokens
    assert list(temp_root.iterdir()) == []  # the decoded file is gone


@contextmanager
def http_server(folder: Path, delay: float = 0.0) -> Iterator[str]:
    """A local HTTP server over `folder` (each answer delayed by `delay` seconds)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self):
            time.sleep(delay)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_urls_are_fetched_with_a_cap_and_a_timeout_and_private_hosts_refused(tiny_vlm_engine, red, temp_root):
    by_data = answer(post(tiny_vlm_engine, ask(image_part(data_url(red))))[1])
    with http_server(red.parent) as base:
        url = f"{base}/{red.name}"
        status, body = post(tiny_vlm_engine, ask(image_part(url)), allow_private_urls=True)
        assert status == 200 and answer(body) == by_data
        status, body = post(tiny_vlm_engine, ask(image_part(url)))
        assert status == 400 and "private or local address (127.0.0.1)" in body["error"]["message"]
        status, body = post(tiny_vlm_engine, ask(image_part(url)), allow_private_urls=True, media_max_bytes=100)
        assert status == 400 and "larger than 100 bytes" in body["error"]["message"]
        status, body = post(tiny_vlm_engine, ask(image_part(f"{base}/none.png")), allow_private_urls=True)
        assert status == 400 and "failed" in body["error"]["message"]
    with http_server(red.parent, delay=1) as base:
        slow = ask(image_part(f"{base}/{red.name}"))
        status, body = post(tiny_vlm_engine, slow, allow_private_urls=True, media_timeout=0.3)
        assert status == 400 and "timed out" in body["error"]["message"]
    assert list(temp_root.iterdir()) == []


def test_local_paths_only_inside_the_media_dir(tiny_vlm_engine, red, tmp_path):
    status, body = post(tiny_vlm_engine, ask(image_part(str(red))))
    assert status == 400 and "local file paths are refused" in body["error"]["message"]
    assert body["error"]["param"] == "messages.0.content.0"
    by_data = answer(post(tiny_vlm_engine, ask(image_part(data_url(red))))[1])
    for inside in (red.name, str(red), f"file://{red}"):
        status, body = post(tiny_vlm_engine, ask(image_part(inside)), media_dir=str(red.parent))
        assert status == 200 and answer(body) == by_data
    (tmp_path / "media").mkdir()
    (tmp_path / "secret.png").write_bytes(red.read_bytes())
    for outside in ("../secret.png", str(tmp_path / "secret.png"), "/etc/passwd", "a\x00.png"):
        status, body = post(tiny_vlm_engine, ask(image_part(outside)), media_dir=str(tmp_path / "media"))
        assert status == 400 and "not a file inside the server's media folder" in body["error"]["message"]


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (image_part("data:image/png;base64,%%%"), "not valid base64"),
        (image_part("data:text/plain;base64,aGk="), "expected a data:image/...;base64"),
        (image_part("ftp://example.com/a.png"), "unsupported URL scheme 'ftp'"),
        (image_part("data:image/png;base64,aGVsbG8="), "cannot be read"),
        ({"type": "image_url"}, "needs `image_url"),
        ({"type": "image", "image": "x"}, "unsupported content part 'image'"),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, "videos, not audios"),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "../x"}}, "such as wav or mp3"),
        ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, "cannot be decoded"),
    ],
)
def test_bad_parts_are_400_with_a_clear_message(tiny_vlm_engine, temp_root, part, message):
    status, body = post(tiny_vlm_engine, ask(part))
    assert status == 400 and message in body["error"]["message"], body
    assert list(temp_root.iterdir()) == []


def test_image_parts_stream_like_the_whole_answer(tiny_vlm_engine, red):
    body = ask({"type": "text", "text": "Colour?"}, image_part(data_url(red)))
    whole = answer(post(tiny_vlm_engine, body)[1])
    app = create_app(tiny_vlm_engine, ServerSettings(model_name="vl"), close_engine=False)
    with TestClient(app).stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == whole


def test_api_media_dir_reaches_the_server_settings_and_safe_media_path_overrides(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from tuneforge.config import load_config
    from tuneforge.serve.server import server_settings

    cfg = load_config({"model_name_or_path": "m", "api_media_dir": str(tmp_path)})
    engine = SimpleNamespace(model_name="m")
    monkeypatch.delenv("SAFE_MEDIA_PATH", raising=False)
    assert server_settings(cfg, engine, ()).media_dir == str(tmp_path)
    monkeypatch.setenv("SAFE_MEDIA_PATH", "/srv/media")  # LLaMA-Factory's variable
    assert server_settings(cfg, engine, ()).media_dir == "/srv/media"
    assert server_settings(load_config({"model_name_or_path": "m"}), engine, ()).media_dir == "/srv/media"
