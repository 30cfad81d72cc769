"""The API app in-process (TestClient): routes, auth, 4xx errors, limits, 429/503, streaming format."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from tuneforge.infer.requests import QueueFullError, ShuttingDownError
from tuneforge.serve.app import create_app
from tuneforge.serve.deps import ServerSettings

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def engine(tiny_qwen2):
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    eng = load_engine(load_config({"model_name_or_path": str(tiny_qwen2), "template": "qwen", "max_new_tokens": 8}))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def client(engine):
    settings = ServerSettings(model_name="tiny", api_keys=(KEY,), max_body_bytes=20_000, max_messages=8)
    with TestClient(create_app(engine, settings, close_engine=False)) as test_client:
        yield test_client


def test_models_and_health(client):
    assert client.get("/v1/models", headers=AUTH).json()["data"][0]["id"] == "tiny"
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_missing_or_wrong_key_is_401(client, headers):
    response = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_a_wrong_key_is_refused_before_the_body_is_read() -> None:
    import asyncio

    from tuneforge.serve.errors import BodyLimitMiddleware
    from tuneforge.serve.metrics import ApiMetrics

    reads, sent = [], []

    async def receive() -> dict:
        reads.append(1)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    async def app(scope: dict, receive, send) -> None:  # pragma: no cover - must not be reached
        raise AssertionError("the app ran for an unauthenticated request")

    from tuneforge.serve.deps import ApiKey

    middleware = BodyLimitMiddleware(app, 1 << 22, ApiMetrics(), keys=(ApiKey(KEY),))
    headers = [(b"content-length", b"4000000"), (b"authorization", b"Bearer wrong")]
    asyncio.run(
        middleware(
            {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}, receive, send
        )
    )
    assert sent[0]["status"] == 401 and not reads
    assert json.loads(sent[1]["body"])["error"]["param"] == "authorization"


def test_chat_completion_shape_and_usage(client):
    body = client.post("/v1/chat/completions", json={**CHAT, "n": 2, "seed": 1}, headers=AUTH).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] <= 8
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_streamed_chat_matches_non_streamed(client):
    request = {**CHAT, "seed": 4, "temperature": 1.0, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=request, headers=AUTH) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert chunks[-1]["usage"]["completion_tokens"] >= 1
    whole = client.post("/v1/chat/completions", json={**request, "stream": False}, headers=AUTH).json()
    assert whole["choices"][0]["message"]["content"] == streamed


def test_text_completion(client):
    body = client.post("/v1/completions", json={"prompt": ["a", "b"], "max_tokens": 3}, headers=AUTH).json()
    assert len(body["choices"]) == 2 and body["usage"]["completion_tokens"] <= 6


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": []},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {**CHAT, "temperature": 7},
        {**CHAT, "max_tokens": 10**9},
        {**CHAT, "n": 1000},
        {**CHAT, "stop": ["x"] * 50},
        {"messages": [{"role": "user", "content": "x"}] * 9},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
    ],
)
def test_malformed_requests_are_400(client, payload):
    response = client.post("/v1/chat/completions", json=payload, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


def test_oversized_body_is_413(client):
    body = {"messages": [{"role": "user", "content": "x" * 30_000}]}
    assert client.post("/v1/chat/completions", json=body).status_code == 401  # no key: refused before the size
    response = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_invalid_json_is_400(client):
    response = client.post(
        "/v1/chat/completions", content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 400


def test_score_without_value_head_is_400(client):
    response = client.post("/v1/score/evaluation", json={"messages": ["a"]}, headers=AUTH)
    assert response.status_code == 400 and "reward model" in response.json()["error"]["message"]


class _BusyEngine:
    """Stands in for an engine whose queue is full or closing."""

    model_name = "busy"
    context_len = 1000

    def __init__(self, engine, error):
        self._engine, self._error = engine, error

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def open_streams(self, prompts, media=None, streamed=True):
        raise self._error


@pytest.mark.parametrize(("error", "status"), [(QueueFullError("full"), 429), (ShuttingDownError("bye"), 503)])
def test_full_queue_is_429_and_shutdown_503(engine, error, status):
    app = create_app(_BusyEngine(engine, error), ServerSettings(model_name="busy"), close_engine=False)
    response = TestClient(app).post("/v1/chat/completions", json=CHAT)
    assert response.status_code == status
    assert "Retry-After" in response.headers


def test_a_non_streamed_answer_wakes_the_loop_once_per_request(engine):
    import asyncio

    from tuneforge.infer.delivery import loop_post

    async def wakes_for(streamed: bool) -> tuple[int, str]:
        loop, calls = asyncio.get_running_loop(), []
        original = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: calls.append(1) or original(*args)
        try:
            ids = engine.tokenizer.encode("Hello there", add_special_tokens=False)
            params = engine.sampling(max_new_tokens=8, temperature=0)
            [stream] = engine.open_streams([(ids, params)], streamed=streamed)
            text = "".join([getattr(event, "text", "") async for event in stream])
            return len(calls), text
        finally:
            loop.call_soon_threadsafe = original
            loop_post(loop)  # the loop's shared post outlives the request

    streamed_wakes, streamed_text = asyncio.run(wakes_for(True))
    quiet_wakes, quiet_text = asyncio.run(wakes_for(False))
    assert quiet_text == streamed_text != ""
    assert quiet_wakes == 1 < streamed_wakes
