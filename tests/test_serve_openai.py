"""The official `openai` client against a live server (uvicorn in a thread) on a tiny model trained to call a tool.

Also a property test: malformed and oversized requests get only 4xx answers and the server keeps serving.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from server_helpers import running_api

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.slow

KEY = "sk-live"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def _train_tool_model(base: Path, out: Path) -> Path:
    """Copy the tiny model and overfit it (plain PyTorch) so the weather question yields CALL then <|im_end|>."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.data.templates import get_template

    shutil.copytree(base, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    template = get_template("qwen", tokenizer)
    prompt = template.encode_prompt(tokenizer, ASK, None, TOOLS)
    target = tokenizer.encode(CALL + "<|im_end|>", add_special_tokens=False)
    ids, wanted = torch.tensor([prompt + target]), torch.tensor(target)
    positions = torch.arange(len(prompt) - 1, len(prompt) + len(target) - 1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(200):  # until teacher-forced argmax reproduces the target: greedy decoding then emits it
        logits = model.lm_head(model.model(input_ids=ids).last_hidden_state[0, positions])
        if bool((logits.argmax(-1) == wanted).all()):
            break
        torch.nn.functional.cross_entropy(logits, wanted).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(tiny_qwen2, tmp_path_factory):
    from tuneforge.config import load_config

    model_dir = _train_tool_model(tiny_qwen2, tmp_path_factory.mktemp("tool") / "model")
    cfg = load_config(
        {
            "model_name_or_path": str(model_dir),
            "template": "qwen",
            "max_new_tokens": 48,
            "api_keys": KEY,
            "served_model_name": "tiny-tool",
        }
    )
    with running_api(cfg) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key=KEY, max_retries=0)


def test_list_models(client):
    assert [m.id for m in client.models.list().data] == ["tiny-tool"]


def test_plain_and_streamed_completion_agree(client):
    kwargs = {"model": "tiny-tool", "messages": [{"role": "user", "content": "hello"}], "seed": 3, "max_tokens": 12}
    whole = client.chat.completions.create(**kwargs)
    pieces = [
        c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs) if c.choices
    ]
    assert whole.choices[0].message.content == "".join(pieces)
    assert whole.usage.completion_tokens <= 12


def test_n_two_choices(client):
    reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hey"}], n=2, max_tokens=5)
    assert sorted(c.index for c in reply.choices) == [0, 1]


def test_stop_string(client):
    kwargs = {"model": "x", "messages": [{"role": "user", "content": "hey"}], "seed": 9, "max_tokens": 24}
    kwargs["temperature"] = 1.0
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    stop = next(full[i : i + 2] for i in range(3, len(full)) if full[i : i + 2].strip() == full[i : i + 2])
    cut = client.chat.completions.create(stop=[stop], **kwargs).choices[0]
    assert cut.message.content == full[: full.index(stop)] and cut.finish_reason == "stop"


def test_tool_call_non_streamed(client):
    reply = client.chat.completions.create(model="x", messages=ASK, tools=TOOLS, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")  # the form OpenAI clients expect


def test_tool_call_streamed_and_fed_back(client):
    chunks = list(client.chat.completions.create(model="x", messages=ASK, tools=TOOLS, temperature=0, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [c.function.name for c in calls] == ["get_weather"] and calls[0].id.startswith("call_")
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    history = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [calls[0].model_dump(exclude={"index"})]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 21}'},
    ]
    reply = client.chat.completions.create(model="x", messages=history, tools=TOOLS, max_tokens=4)
    assert reply.usage.prompt_tokens > len(ASK[0]["content"]) // 4


def test_text_completions(client):
    reply = client.completions.create(model="x", prompt="Once upon", max_tokens=4, seed=1)
    assert reply.choices[0].finish_reason in ("length", "stop") and reply.usage.completion_tokens <= 4


def test_wrong_key_is_401(server):
    bad = openai.OpenAI(base_url=server, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_malformed_request_is_400(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="x", messages=ASK, temperature=9)


def test_fuzzed_requests_get_only_4xx(server):
    import httpx
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
    values = st.recursive(
        scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c), max_leaves=8
    )
    fields = st.sampled_from(["messages", "max_tokens", "temperature", "n", "stop", "tools", "seed", "top_p", "x"])
    bodies = st.dictionaries(fields, values, max_size=5).map(lambda d: {**d, "max_tokens": d.get("max_tokens", -1)})
    http = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies | st.binary(max_size=64).map(lambda b: b"\x00" + b), huge=st.booleans())
    def check(body, huge):
        if isinstance(body, bytes):
            response = http.post("/chat/completions", content=body * (100_000 if huge else 1))
        else:
            payload = json.dumps(body).encode()  # may hold NaN / Infinity: not valid JSON for strict parsers
            response = http.post("/chat/completions", content=payload, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, response.text

    check()
    assert http.get("/models").status_code == 200
