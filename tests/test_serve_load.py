"""A live server (uvicorn) under hostile load: disconnects stop the engine within one decode step, and good streams
mixed with bad requests all complete unharmed."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from server_helpers import serving, tiny_engine

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.slow

LONG = 4000  # tokens a request would take if nobody stopped it (a random model rarely samples its stop token)


@pytest.fixture(scope="module")
def live(tiny_qwen2):
    from tuneforge.serve.deps import ServerSettings

    engine = tiny_engine(tiny_qwen2, max_batch_size=8, max_queue_size=32)
    with serving(engine, ServerSettings(model_name="tiny", max_body_bytes=1 << 20)) as url:
        yield url, engine


def _wait(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _raw_post(url: str, path: str, body: dict) -> socket.socket:
    """Send a POST over a plain socket and return it unread (closing it is a client disconnect)."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


CASES = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "tell me"}]}),
    "completions": ("/v1/completions", {"prompt": "Once upon a time"}),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["chat", "completions"])
def test_client_disconnect_stops_the_engine_within_one_step(live, monkeypatch, kind, stream):
    from tuneforge.infer.requests import GenerationRequest

    url, engine = live
    _wait(lambda: engine.stats.in_flight == 0)
    at_cancel: list[int] = []
    original = GenerationRequest.cancel

    def cancel(self):
        if not at_cancel:
            at_cancel.append(engine.stats.tokens_total)
        original(self)

    monkeypatch.setattr(GenerationRequest, "cancel", cancel)
    path, body = CASES[kind]
    start = engine.stats.tokens_total
    body = {**body, "max_tokens": LONG, "temperature": 1.0, "seed": 3, "n": 2, "stream": stream}
    sock = _raw_post(url, path, body)
    _wait(lambda: engine.stats.tokens_total >= start + 10)  # both choices are decoding
    sock.close()
    _wait(lambda: engine.stats.in_flight == 0)
    assert at_cancel, "the disconnect never cancelled the engine requests"
    assert engine.stats.tokens_total - at_cancel[0] <= 2  # at most the step in progress, one token per choice
    assert engine.stats.tokens_total - start < 2 * LONG


def test_disconnect_while_queued_frees_the_place(live):
    url, engine = live
    _wait(lambda: engine.stats.in_flight == 0)
    from tuneforge.infer.requests import GenerationRequest

    blocker = GenerationRequest([1, 2], engine.sampling(max_new_tokens=1), lambda e: None)
    with engine.backend.model_lock:  # the engine is stuck in a forward pass: new requests wait in the queue
        engine.backend.submit(blocker)
        _wait(lambda: len(engine.backend.queue) == 0)
        socks = [_raw_post(url, *CASES["completions"]) for _ in range(3)]
        _wait(lambda: len(engine.backend.queue) >= 3)
        for sock in socks:
            sock.close()
        _wait(lambda: len(engine.backend.queue) == 0)  # freed while the engine is still blocked
    _wait(lambda: engine.stats.in_flight == 0)


def _stream_text(client: httpx.Client, body: dict) -> tuple[str, list[str]]:
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(d) for d in data[:-1]]
    assert data[-1] == "[DONE]" and all("error" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]


BAD_BODIES = [
    {"messages": [{"role": "user", "content": "\ud800"}]},
    {"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 1e-300},
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": "10"},
    {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": ""}}]},
    {"messages": [{"role": "user", "content": "x"}], "tools": [{"function": {"name": "f", "parameters": []}}]},
    {"messages": [{"role": "user", "content": "x" * (2 << 20)}]},
]


def test_good_streams_survive_bad_neighbours(live):
    url, engine = live
    goods = [
        {"messages": [{"role": "user", "content": f"story {i}"}], "max_tokens": 24, "temperature": 0} for i in range(6)
    ]
    with httpx.Client(base_url=url, timeout=120) as client:
        alone = [_stream_text(client, body) for body in goods]

        def bad(body: dict) -> int:
            raw = json.dumps(body).encode()
            return client.post(
                "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
            ).status_code

        def quitter(_: int) -> None:
            sock = _raw_post(url, "/v1/chat/completions", {**goods[0], "max_tokens": LONG, "stream": True})
            sock.recv(1)
            sock.close()

        with ThreadPoolExecutor(16) as pool:
            good_runs = [pool.submit(_stream_text, client, body) for body in goods]
            bad_runs = [pool.submit(bad, body) for body in BAD_BODIES * 2]
            quit_runs = [pool.submit(quitter, i) for i in range(3)]
            together = [run.result() for run in good_runs]
            statuses = [run.result() for run in bad_runs]
            for run in quit_runs:
                run.result()
    assert together == alone  # same text, same finish reasons: nothing leaked from the bad requests
    assert all(400 <= status < 500 for status in statuses), statuses
    _wait(lambda: engine.stats.in_flight == 0)
    assert engine.stats.failed_total == 0


def test_health_and_metrics_answer_while_streams_run(live):
    url, _ = live
    with httpx.Client(base_url=url, timeout=120) as client:
        body = {"messages": [{"role": "user", "content": "go"}], "max_tokens": 64}
        with ThreadPoolExecutor(8) as pool:
            runs = [pool.submit(_stream_text, client, body) for _ in range(8)]
            assert client.get("/health").json()["status"] == "ok"
            assert "tuneforge_running_requests" in client.get("/metrics").text
            assert all(run.result()[1] for run in runs)


def test_a_request_failing_inside_the_batch_gets_a_4xx_and_its_neighbours_finish(live, monkeypatch):
    """A row whose sampling raises (here: any row seeded 666) fails its own request only, as a client error."""
    from tuneforge.infer import hf_backend

    url, _ = live
    real = hf_backend.sample_batch

    def poisoned(logits, params, counts, generators):
        if any(p.seed == 666 for p in params):
            raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        return real(logits, params, counts, generators)

    goods = [
        {"messages": [{"role": "user", "content": f"tale {i}"}], "max_tokens": 24, "temperature": 0} for i in range(4)
    ]
    bad = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 24, "temperature": 1.0, "seed": 666}
    with httpx.Client(base_url=url, timeout=120) as client:
        alone = [_stream_text(client, body) for body in goods]
        monkeypatch.setattr(hf_backend, "sample_batch", poisoned)
        with ThreadPoolExecutor(8) as pool:
            good_runs = [pool.submit(_stream_text, client, body) for body in goods]
            whole = [pool.submit(client.post, "/v1/chat/completions", json=bad) for _ in range(2)]
            streamed = pool.submit(client.post, "/v1/chat/completions", json={**bad, "stream": True})
            together = [run.result() for run in good_runs]
            answers = [run.result() for run in whole]
            events = [
                json.loads(line[6:]) for line in streamed.result().text.splitlines() if line.startswith("data: {")
            ]
    assert together == alone
    assert all(a.status_code == 400 and a.json()["error"]["type"] == "invalid_request_error" for a in answers)
    assert "seed=" not in answers[0].text and "temperature=1.0" in answers[0].text  # names the request's settings
    assert events[-1]["error"]["type"] == "invalid_request_error"
