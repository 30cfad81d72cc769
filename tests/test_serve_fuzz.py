"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis) against a live tiny model.

Every operation gets schema-valid and schema-violating requests: no 5xx, every answer matches the documented
status codes, content types and bodies, and the server still serves afterwards.
"""

from __future__ import annotations

import pytest

from server_helpers import serving, tiny_engine

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.slow

KEY = "sk-fuzz"
MAX_EXAMPLES = 40  # per operation: keeps the whole run around a minute on two CPU cores
MAX_TOKENS = 4  # generation length is not what is being fuzzed; a random max_tokens would only burn CPU


@pytest.fixture(scope="module")
def api_url(tiny_qwen2):
    from tuneforge.serve.deps import ServerSettings

    engine = tiny_engine(tiny_qwen2, max_new_tokens=MAX_TOKENS)
    settings = ServerSettings(model_name="tiny", api_keys=(KEY,), max_body_bytes=64 * 1024, request_timeout=60)
    with serving(engine, settings) as url:
        yield url


@pytest.fixture(scope="module")
def operations(api_url):
    loaded = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


def _bounded(body: object) -> object:
    """The body with max_tokens / max_completion_tokens capped (only when they are valid integers already)."""
    if isinstance(body, dict):
        for key in ("max_tokens", "max_completion_tokens"):
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_TOKENS:
                body[key] = MAX_TOKENS
    return body


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_error_and_no_schema_violation(operations, mode):
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    assert {op.label for op in operations} >= {"POST /v1/chat/completions", "POST /v1/completions", "GET /health"}
    for operation in operations:
        if mode == "negative" and operation.method.upper() != "POST":
            continue  # GET /health, /metrics, /v1/models take no input a request could get wrong

        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(GenerationMode(mode)))
        def check(case):
            case.body = _bounded(case.body)
            # schema-valid bodies may still be refused (a tool schema that is not JSON Schema, a prompt longer
            # than the context): accepting every schema-valid body is not a property of this API; the rest are.
            case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=[positive_data_acceptance]
            )

        check()


def test_server_alive_after_fuzzing(api_url):
    import httpx

    assert httpx.get(f"{api_url}/health").json()["status"] == "ok"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    answer = httpx.post(f"{api_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200 and answer.json()["choices"]
