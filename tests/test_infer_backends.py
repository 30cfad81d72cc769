"""vLLM and SGLang backends against fake `vllm` / `sglang` modules (the real ones need CUDA).

The fakes mirror the real signatures the backends call: vLLM's `AsyncEngineArgs(**kw)`,
`AsyncLLMEngine.from_engine_args(args)`, `generate(prompt, sampling_params, request_id, *, lora_request=None)`,
`abort(request_id)`, `shutdown()`, `SamplingParams(**kw)`, `RequestOutputKind.DELTA`,
`LoRARequest(lora_name, lora_int_id, lora_path)`; SGLang's `Engine(**server_args)`,
`async_generate(prompt=None, sampling_params=None, input_ids=None, ..., lora_path=None, stream=False, rid=None)`,
`tokenizer_manager.abort_request(rid=...)`, `shutdown()`. They record what they get and yield scripted outputs.
"""

from __future__ import annotations

import asyncio
import enum
import queue
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.infer import async_backend
from tuneforge.infer.params import SamplingParams
from tuneforge.infer.requests import Finished, GenerationRequest, TextDelta

# ---- fakes ------------------------------------------------------------------------------------------------------


class Script:
    """What the fake engines stream: a list of (text, token_ids, finish_reason) steps; `hang` waits forever after."""

    def __init__(self, steps: list[tuple[str, list[int], str | None]], hang: bool = False) -> None:
        self.steps, self.hang = steps, hang
        self.calls: list[dict] = []
        self.aborted: list[str] = []
        self.shutdown = 0


def _fake_vllm(script: Script) -> dict[str, types.ModuleType]:
    vllm = types.ModuleType("vllm")

    class AsyncEngineArgs:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class AsyncLLMEngine:
        @classmethod
        def from_engine_args(cls, engine_args):
            script.engine_args = engine_args.kwargs
            return cls()

        async def generate(self, prompt, sampling_params, request_id, *, lora_request=None):
            script.calls.append(
                {"prompt": prompt, "params": sampling_params.kwargs, "id": request_id, "lora": lora_request}
            )
            for i, (text, ids, reason) in enumerate(script.steps):
                done = i == len(script.steps) - 1 and not script.hang
                completion = SimpleNamespace(text=text, token_ids=ids, finish_reason=reason)
                yield SimpleNamespace(outputs=[completion], finished=done)
            if script.hang:
                await asyncio.Event().wait()

        async def abort(self, request_id):
            script.aborted.append(request_id)

        def shutdown(self):
            script.shutdown += 1

    vllm.AsyncEngineArgs, vllm.AsyncLLMEngine, vllm.SamplingParams = AsyncEngineArgs, AsyncLLMEngine, SamplingParams
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = enum.Enum("RequestOutputKind", ["CUMULATIVE", "DELTA", "FINAL_ONLY"])
    lora, lora_request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = lambda lora_name, lora_int_id, lora_path: SimpleNamespace(
        name=lora_name, id=lora_int_id, path=lora_path
    )
    return {"vllm": vllm, "vllm.sampling_params": sampling, "vllm.lora": lora, "vllm.lora.request": lora_request}


def _fake_sglang(script: Script) -> dict[str, types.ModuleType]:
    sglang = types.ModuleType("sglang")

    class Engine:
        def __init__(self, **kwargs):
            script.engine_args = kwargs
            self.server_args = SimpleNamespace(incremental_streaming_output=False)
            self.tokenizer_manager = SimpleNamespace(
                abort_request=lambda rid="", abort_all=False: script.aborted.append(rid)
            )

        async def async_generate(
            self, prompt=None, sampling_params=None, input_ids=None, lora_path=None, stream=False, rid=None
        ):
            script.calls.append(
                {"input_ids": input_ids, "params": sampling_params, "lora": lora_path, "id": rid, "stream": stream}
            )

            async def outputs():
                text, ids = "", []
                for text_piece, id_piece, reason in script.steps:  # SGLang streams cumulative text and ids
                    text, ids = text + text_piece, ids + id_piece
                    finish = {"type": reason} if reason else None
                    yield {"text": text, "output_ids": ids, "meta_info": {"finish_reason": finish}}
                if script.hang:
                    await asyncio.Event().wait()

            return outputs()

        def shutdown(self):
            script.shutdown += 1

    sglang.Engine = Engine
    return {"sglang": sglang}


FAKES = {"vllm": _fake_vllm, "sglang": _fake_sglang}


@pytest.fixture
def gpu(monkeypatch):
    """Pretend a CUDA GPU is visible (the real check asks torch)."""
    monkeypatch.setattr(async_backend, "cuda_available", lambda: True)
    monkeypatch.setattr(async_backend, "gpu_count", lambda: 2)
    for backend in ("vllm_backend", "sglang_backend"):  # each binds gpu_count when it is first imported
        monkeypatch.setattr(f"tuneforge.infer.{backend}.gpu_count", lambda: 2)


def _install(monkeypatch, name: str, script: Script) -> None:
    for module_name, module in FAKES[name](script).items():
        monkeypatch.setitem(sys.modules, module_name, module)


def _cfg(**keys):
    return load_config({"model_name_or_path": "/models/m", **keys}, paths=False)


def _collect(backend, prompt_ids, params) -> list:
    sink: queue.Queue = queue.Queue()
    request = GenerationRequest(list(prompt_ids), params, sink.put)
    backend.submit(request)
    events = []
    while not events or not isinstance(events[-1], Finished):
        events.append(sink.get(timeout=10))
    return events


# ---- argument mapping -------------------------------------------------------------------------------------------


def test_vllm_engine_args_follow_the_config(monkeypatch, gpu):
    from tuneforge.infer.vllm_backend import engine_args

    cfg = _cfg(
        vllm_maxlen=2048,
        vllm_gpu_util=0.5,
        vllm_enforce_eager=True,
        vllm_max_lora_rank=64,
        infer_dtype="bfloat16",
        trust_remote_code=True,
        adapter_name_or_path="/adapters/a",
        vllm_config='{"max_num_seqs": 16, "gpu_memory_utilization": 0.6}',
    )
    args = engine_args(cfg)
    assert args["model"] == "/models/m" and args["dtype"] == "bfloat16" and args["trust_remote_code"] is True
    assert (args["max_model_len"], args["enforce_eager"], args["tensor_parallel_size"]) == (2048, True, 2)
    assert (args["enable_lora"], args["max_loras"], args["max_lora_rank"]) == (True, 1, 64)
    assert args["max_num_seqs"] == 16 and args["gpu_memory_utilization"] == 0.6  # vllm_config wins
    assert "enable_lora" not in engine_args(_cfg(vllm_config={"seed": 3}))
    assert engine_args(_cfg(vllm_config={"seed": 3}))["seed"] == 3


def test_bad_vllm_config_json_names_the_key():
    from tuneforge.infer.vllm_backend import engine_args

    with pytest.raises(ConfigError, match="vllm_config"):
        engine_args(_cfg(vllm_config="{max_num_seqs: 16"))


def test_sglang_engine_kwargs_follow_the_config(gpu):
    from tuneforge.infer.sglang_backend import engine_kwargs

    cfg = _cfg(sglang_maxlen=1024, sglang_mem_fraction=0.8, sglang_lora_backend="flashinfer", sglang_config={"a": 1})
    kwargs = engine_kwargs(cfg, "/adapters/a")
    assert kwargs["model_path"] == "/models/m" and kwargs["context_length"] == 1024
    assert kwargs["mem_fraction_static"] == 0.8 and kwargs["tp_size"] == 2 and kwargs["a"] == 1
    assert kwargs["lora_paths"] == ["tuneforge-adapter=/adapters/a"] and kwargs["lora_backend"] == "flashinfer"
    assert engine_kwargs(_cfg(sglang_tp_size=1), None)["tp_size"] == 1
    assert "lora_paths" not in engine_kwargs(cfg, None)


def test_sampling_settings_map_to_both_engines():
    from tuneforge.infer.sglang_backend import sampling_dict
    from tuneforge.infer.vllm_backend import sampling_kwargs

    params = SamplingParams(
        temperature=0.7, top_p=0.9, top_k=0, repetition_penalty=1.1, presence_penalty=0.5,
        frequency_penalty=-0.3, seed=7, stop=("END",), stop_token_ids=(9, 3), skip_special_tokens=False,
    )  # fmt: skip
    v = sampling_kwargs(params, 12)
    assert v == {
        "n": 1, "temperature": 0.7, "top_p": 0.9, "top_k": -1, "max_tokens": 12, "stop": ["END"],
        "stop_token_ids": [3, 9], "presence_penalty": 0.5, "frequency_penalty": -0.3, "repetition_penalty": 1.1,
        "seed": 7, "skip_special_tokens": False,
    }  # fmt: skip
    s = sampling_dict(params, 12)
    assert s["max_new_tokens"] == 12 and s["sampling_seed"] == 7 and s["stop"] == ["END"] and s["top_k"] == -1
    assert (s["presence_penalty"], s["frequency_penalty"], s["repetition_penalty"]) == (0.5, -0.3, 1.1)
    greedy = sampling_kwargs(SamplingParams(do_sample=False, top_k=20), 5)
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, -1)
    assert "sampling_seed" not in sampling_dict(SamplingParams(), 5)


def test_max_tokens_fit_the_context():
    request = GenerationRequest([1] * 90, SamplingParams(max_new_tokens=50), lambda e: None)
    assert async_backend.max_tokens_for(request, 100) == 10
    assert async_backend.max_tokens_for(request, 1000) == 50


# ---- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "install"), [("vllm", "tuneforge[vllm]"), ("sglang", "tuneforge[sglang]")])
def test_missing_package_names_the_install_command(monkeypatch, name, install):
    from tuneforge.infer import load_engine

    monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=rf"infer_backend: {name}.*{install.replace('[', '.').replace(']', '.')}"):
        load_engine(_cfg(infer_backend=name))


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_no_gpu_is_a_clear_error(monkeypatch, name):
    from tuneforge.infer import load_engine

    _install(monkeypatch, name, Script([]))
    monkeypatch.setattr(async_backend, "cuda_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        load_engine(_cfg(infer_backend=name))


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_several_adapters_are_refused_with_what_to_do(monkeypatch, gpu, name):
    from tuneforge.infer import load_engine

    _install(monkeypatch, name, Script([]))
    with pytest.raises(ConfigError, match=r"lists 2 adapters.*tuneforge export.*adapter_name_or_path: /b"):
        load_engine(_cfg(infer_backend=name, adapter_name_or_path="/a,/b"))


# ---- streaming through the backend ------------------------------------------------------------------------------

STEPS = [("Hel", [1], None), ("lo, wor", [2, 3], None), ("ld!", [4], "stop")]


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_stream_deltas_and_finish_reason(monkeypatch, gpu, name):
    script = Script(STEPS)
    _install(monkeypatch, name, script)
    module = __import__(f"tuneforge.infer.{name}_backend", fromlist=["build_backend"])
    backend = module.build_backend(_cfg(infer_backend=name, adapter_name_or_path="/adapters/a"))
    try:
        events = _collect(backend, [5, 6, 7], SamplingParams(max_new_tokens=8))
    finally:
        backend.close(5)
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == "Hello, world!" and len(texts) == 3
    assert events[-1] == Finished("stop", 3, 4)
    call = script.calls[0]
    if name == "vllm":
        assert call["prompt"] == {"prompt_token_ids": [5, 6, 7]} and call["params"]["max_tokens"] == 8
        assert call["params"]["output_kind"].name == "DELTA"
        assert (call["lora"].name, call["lora"].id, call["lora"].path) == ("tuneforge-adapter", 1, "/adapters/a")
    else:
        assert call["input_ids"] == [5, 6, 7] and call["stream"] is True and call["lora"] == "tuneforge-adapter"
    assert script.shutdown == 1


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_length_finish_and_stop_string_held_back(monkeypatch, gpu, name):
    script = Script([("abc S", [1], None), ("TOP tail", [2], None), ("more", [3], "length")])
    _install(monkeypatch, name, script)
    module = __import__(f"tuneforge.infer.{name}_backend", fromlist=["build_backend"])
    backend = module.build_backend(_cfg(infer_backend=name))
    try:
        stopped = _collect(backend, [1], SamplingParams(stop=("STOP",)))
        script.steps = [("x", [1], None), ("y", [2], "length")]
        length = _collect(backend, [1], SamplingParams())
    finally:
        backend.close(5)
    assert "".join(e.text for e in stopped if isinstance(e, TextDelta)) == "abc "
    assert stopped[-1].reason == "stop"
    assert script.aborted == [script.calls[0]["id"]]  # the engine had not cut it: tuneforge aborts the request
    assert length[-1] == Finished("length", 1, 2)


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_cancel_aborts_the_engine_request(monkeypatch, gpu, name):
    script = Script([("first", [1], None)], hang=True)
    _install(monkeypatch, name, script)
    module = __import__(f"tuneforge.infer.{name}_backend", fromlist=["build_backend"])
    backend = module.build_backend(_cfg(infer_backend=name))
    sink: queue.Queue = queue.Queue()
    request = GenerationRequest([1, 2], SamplingParams(), sink.put)
    try:
        backend.submit(request)
        assert sink.get(timeout=10) == TextDelta("first", (1,))
        request.cancel()
        assert sink.get(timeout=10) == Finished("cancelled", 2, 1)
    finally:
        backend.close(5)
    assert script.aborted == [f"tuneforge-{request.request_id}"] == [script.calls[0]["id"]]


def test_engine_chat_over_vllm_uses_the_training_template(monkeypatch, gpu, tiny_qwen2: Path):
    from tuneforge.infer import load_engine

    script = Script([("Hi ", [1], None), ("there", [2], "stop")])
    _install(monkeypatch, "vllm", script)
    engine = load_engine(
        load_config({"model_name_or_path": str(tiny_qwen2), "template": "qwen", "infer_backend": "vllm"})
    )
    try:
        messages = [{"role": "user", "content": "hello"}]
        result = engine.chat(messages, temperature=0)
        prompt = engine.encode_chat(messages)
    finally:
        engine.close(5)
    assert (result.content, result.finish_reason) == ("Hi there", "stop")
    assert script.calls[0]["prompt"]["prompt_token_ids"] == prompt.ids
    im_end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in script.calls[0]["params"]["stop_token_ids"]  # template stop token reaches vLLM
    assert script.calls[0]["params"]["temperature"] == 0.0


def test_quantization_bit_with_an_external_engine_is_refused(tiny_qwen2) -> None:
    from tuneforge.config import load_config
    from tuneforge.errors import TuneforgeError
    from tuneforge.infer import load_engine

    cfg = load_config(
        {"model_name_or_path": str(tiny_qwen2), "template": "qwen", "infer_backend": "vllm", "quantization_bit": 4},
        paths=False,
    )
    with pytest.raises(TuneforgeError, match="quantization_bit"):
        load_engine(cfg)
