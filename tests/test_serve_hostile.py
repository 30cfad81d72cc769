"""The hand-made probes of issue 18 as regression tests: every bad request is a 4xx naming the field, never a 5xx.

Also strict OpenAI types, tool schemas as JSON Schema, tool_choice, 405/413 labels, call ids, named rate-limited
keys, all-or-nothing queueing of multi-prompt completions, and /metrics.
"""

from __future__ import annotations

import json

import pytest

from server_helpers import tiny_engine

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from tuneforge.errors import TuneforgeError
from tuneforge.serve.app import create_app
from tuneforge.serve.deps import ApiKey, ServerSettings, parse_api_keys

USER = [{"role": "user", "content": "hi"}]
CHAT = {"messages": USER, "max_tokens": 2}
SURROGATE = "\ud800"
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


@pytest.fixture(scope="module")
def engine(tiny_qwen2):
    eng = tiny_engine(tiny_qwen2, max_new_tokens=4, max_queue_size=8)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(engine, ServerSettings(model_name="tiny"), close_engine=False)) as test_client:
        yield test_client


def _post(client, path, body, **kwargs):
    raw = json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \\ud800 escapes, as clients send them
    return client.post(path, content=raw, headers={"Content-Type": "application/json"}, **kwargs)


def _tool(parameters, name="f"):
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


BAD = [
    ("chat", {"messages": [{"role": "user", "content": f"a{SURROGATE}b"}]}, "messages.0.content"),
    ("chat", {"messages": [{"role": "system", "content": SURROGATE}, *USER]}, "messages.0.content"),
    ("chat", {**CHAT, "model": SURROGATE, "stream": True}, "model"),
    (
        "chat",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]},
        "messages.0.content.0.text",
    ),
    ("completions", {"prompt": f"x{SURROGATE}"}, "prompt"),
    ("completions", {"prompt": ["ok", SURROGATE]}, "prompt.1"),
    ("chat", {**CHAT, "tools": [_tool({"type": "object", "properties": ["a"]})]}, "tools.0.function.parameters"),
    ("chat", {**CHAT, "tools": [_tool({"type": "object", "properties": "a"})]}, "tools.0.function.parameters"),
    ("chat", {**CHAT, "tools": [_tool({"properties": {"a": "string"}})]}, "tools.0.function.parameters"),
    ("chat", {**CHAT, "tools": [_tool({"properties": {"a": None}})]}, "tools.0.function.parameters"),
    (
        "chat",
        {**CHAT, "tools": [_tool({"properties": {"a": {"type": "array", "items": "x"}}})]},
        "tools.0.function.parameters",
    ),
    ("chat", {**CHAT, "tools": [_tool({}, name="")]}, "tools.0.function.name"),
    (
        "chat",
        {**CHAT, "tools": [_tool({})], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    ("chat", {**CHAT, "tool_choice": "required"}, "tool_choice"),
    ("chat", {**CHAT, "max_tokens": "10"}, "max_tokens"),
    ("chat", {**CHAT, "n": "2"}, "n"),
    ("chat", {**CHAT, "stream": "true"}, "stream"),
    ("chat", {**CHAT, "temperature": "0.5"}, "temperature"),
    ("chat", {**CHAT, "repetition_penalty": 1e-300}, "repetition_penalty"),
    ("chat", {**CHAT, "repetition_penalty": 1e300}, "repetition_penalty"),
    ("chat", {**CHAT, "seed": 2**64}, "seed"),
    ("completions", {"prompt": "x", "max_tokens": 10**9}, "max_tokens"),
    ("completions", {"prompt": ["a", ""]}, "prompt.1"),
]


@pytest.mark.parametrize(("route", "body", "param"), BAD)
def test_bad_requests_are_400_naming_the_field(client, route, body, param):
    response = _post(client, PATHS[route], body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param


def test_tuple_items_and_boolean_schemas_are_valid_and_rendered(client):
    parameters = {
        "type": "object",
        "properties": {"pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}, "any": True},
    }
    response = _post(client, "/v1/chat/completions", {**CHAT, "tools": [_tool(parameters)]})
    assert response.status_code == 200, response.text


def test_wrong_method_is_405_not_a_server_error(client):
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_too_many_generations_for_the_queue_is_400_and_queues_nothing(client, engine):
    response = _post(client, "/v1/completions", {"prompt": ["a"] * 5, "n": 2, "max_tokens": 1})
    assert response.status_code == 400 and "max_queue_size" in response.json()["error"]["message"]
    assert len(engine.backend.queue) == 0 and engine.stats.in_flight == 0


def test_a_429_part_way_queues_nothing(tiny_qwen2):
    import time

    from tuneforge.infer.requests import GenerationRequest

    engine = tiny_engine(tiny_qwen2, max_queue_size=8, max_batch_size=1)
    blockers = [GenerationRequest([1], engine.sampling(max_new_tokens=1), lambda e: None) for _ in range(6)]
    try:
        with engine.backend.model_lock:  # the worker takes one blocker, then waits at its forward pass
            engine.backend.queue.put(*blockers)
            while len(engine.backend.queue) != 5:
                time.sleep(0.01)
            with TestClient(create_app(engine, ServerSettings(model_name="tiny"), close_engine=False)) as local:
                response = _post(local, "/v1/completions", {"prompt": ["a", "b", "c", "d"], "max_tokens": 1})
            assert response.status_code == 429 and response.headers["Retry-After"]
            assert len(engine.backend.queue) == 5  # none of the four prompts was queued
            for request in blockers:
                request.cancel()
            engine.backend.queue.discard_cancelled()
            assert len(engine.backend.queue) == 0
    finally:
        engine.close()


def test_tool_call_ids_use_the_call_underscore_form():
    from tuneforge.serve.schemas import tool_call_id

    assert tool_call_id().startswith("call_") and len(tool_call_id()) == 29


def test_named_keys_with_rate_limits(engine):
    keys = parse_api_keys("alice=sk-a@2, sk-b")
    assert keys == (ApiKey("sk-a", "alice", 2), ApiKey("sk-b", "key2", None))
    settings = ServerSettings(model_name="tiny", api_keys=keys)
    with TestClient(create_app(engine, settings, close_engine=False)) as local:
        alice, bob = {"Authorization": "Bearer sk-a"}, {"Authorization": "Bearer sk-b"}
        assert [local.get("/v1/models", headers=alice).status_code for _ in range(2)] == [200, 200]
        limited = local.get("/v1/models", headers=alice)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error" and "alice" in limited.json()["error"]["message"]
        assert local.get("/v1/models", headers=bob).status_code == 200  # other keys are not limited


@pytest.mark.parametrize("spec", ["alice=@5", "sk-a@x", "sk-a@0"])
def test_malformed_key_spec_is_refused(spec):
    with pytest.raises(TuneforgeError, match="api_keys entry 1"):
        parse_api_keys(spec)


def test_metrics_in_prometheus_format(client):
    _post(client, "/v1/chat/completions", {**CHAT, "n": "x"})
    _post(client, "/v1/chat/completions", CHAT)
    text = client.get("/metrics").text
    for name in (
        "tuneforge_queue_depth",
        "tuneforge_running_requests",
        "tuneforge_tokens_per_second",
        "tuneforge_generated_tokens_total",
        'tuneforge_time_to_first_token_seconds_bucket{le="+Inf"}',
        'tuneforge_errors_total{type="invalid_request_error"}',
    ):
        assert name in text
    assert "# TYPE tuneforge_time_to_first_token_seconds histogram" in text


@pytest.mark.parametrize("stream", [False, True])
def test_request_timeout_ends_the_request_with_a_clear_error(engine, stream):
    import time

    settings = ServerSettings(model_name="tiny", request_timeout=0.3)
    body = {"prompt": "Once upon a time", "max_tokens": 20_000, "temperature": 1.0, "seed": 1, "stream": stream}
    with TestClient(create_app(engine, settings, close_engine=False)) as local:
        response = _post(local, "/v1/completions", body)
    if stream:
        errors = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith('data: {"error"')]
        assert response.status_code == 200 and errors[0]["error"]["type"] == "timeout_error"
    else:
        assert response.status_code == 408 and response.json()["error"]["type"] == "timeout_error"
    assert "request_timeout" in response.text
    deadline = time.monotonic() + 30
    while engine.stats.in_flight and time.monotonic() < deadline:  # the engine drops the request at its next step
        time.sleep(0.01)
    assert engine.stats.in_flight == 0


def test_server_settings_read_the_new_config_keys(tiny_qwen2):
    from tuneforge.config import load_config
    from tuneforge.serve.server import server_settings

    cfg = load_config({"model_name_or_path": str(tiny_qwen2), "request_timeout": 5, "max_request_bytes": 2048,
                       "api_keys": "ops=sk-1@10"})  # fmt: skip
    settings = server_settings(cfg, type("E", (), {"model_name": "m"})())
    assert (settings.request_timeout, settings.max_body_bytes) == (5, 2048)
    assert settings.api_keys == (ApiKey("sk-1", "ops", 10),)


ODD_VALID_SCHEMAS = [
    {"type": "object", "properties": {"pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}}},
    {"type": "object", "properties": {"yes": True, "no": False, "any": {"type": "array", "items": True}}},
    {"type": "object", "properties": {"d": {"type": "string", "description": "x"}, "u": {"type": ["string", "null"]}}},
]


@pytest.mark.parametrize("parameters", ODD_VALID_SCHEMAS)
def test_every_tool_template_renders_every_valid_schema_form(parameters):
    from tuneforge.data.templates import get_template, list_templates
    from tuneforge.errors import ConfigError
    from tuneforge.serve.validation import check_json_schema

    check_json_schema(parameters)
    tools = [_tool(parameters)]
    rendered = 0
    for name in list_templates():
        try:
            text = get_template(name, None).render(USER, None, tools, add_generation_prompt=True)
        except ConfigError:  # the template has no tool format at all
            continue
        rendered += 1
        assert "f" in text
    assert rendered > 20
