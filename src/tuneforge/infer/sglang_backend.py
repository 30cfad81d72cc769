"""The SGLang backend (`infer_backend: sglang`): tuneforge's prompts and sampling settings on SGLang's engine.

Written against SGLang 0.5 (`sglang.Engine(**server_args)`, `await engine.async_generate(input_ids=...,
sampling_params={...}, lora_path=..., rid=..., stream=True)` returning an async iterator of dicts
`{"text", "output_ids", "meta_info": {"finish_reason", "completion_tokens", ...}}`,
`engine.tokenizer_manager.abort_request(rid=...)`, `engine.shutdown()`). Unless the server runs with
`incremental_streaming_output` (or the older `stream_output`), each streamed dict holds the text and ids so far;
the client turns them into deltas either way.

Prompts are token ids from tuneforge's template; SGLang only detokenizes. One LoRA adapter is loaded at start
(`lora_paths`) and named in every request; several `adapter_name_or_path` entries are refused, as with vLLM.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tuneforge.infer.async_backend import (
    AsyncLoopBackend,
    Chunk,
    gpu_count,
    merged_extra,
    require_cuda,
    require_package,
)
from tuneforge.infer.params import SamplingParams
from tuneforge.infer.vllm_backend import LORA_NAME, single_adapter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tuneforge.config import TuneforgeConfig
    from tuneforge.infer.requests import GenerationRequest

logger = logging.getLogger(__name__)

INSTALL = "pip install 'tuneforge[sglang]'"
_DTYPES = {"auto": "auto", "float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


def check(cfg: TuneforgeConfig) -> str | None:
    """Raise ConfigError when sglang is missing, no GPU is visible or several adapters are listed; the adapter."""
    require_package("sglang", "sglang", INSTALL)
    require_cuda("sglang")
    return single_adapter(cfg, "sglang")


def build_backend(cfg: TuneforgeConfig) -> AsyncLoopBackend:
    """A running SGLang backend for the config (checks the package, the GPU and the adapters first)."""
    adapter = check(cfg)
    kwargs = engine_kwargs(cfg, adapter)
    return AsyncLoopBackend(
        lambda: SGLangClient.start(kwargs, adapter is not None, cfg.inference.sglang_maxlen),
        name="sglang",
        max_queue_size=cfg.server.max_queue_size,
    )


def engine_kwargs(cfg: TuneforgeConfig, adapter: str | None) -> dict[str, Any]:
    """Keyword arguments for `sglang.Engine` from the model and inference sections (+ `sglang_config`)."""
    m, inf = cfg.model, cfg.inference
    kwargs: dict[str, Any] = {
        "model_path": m.model_name_or_path,
        "trust_remote_code": m.trust_remote_code,
        "dtype": _DTYPES[inf.infer_dtype],
        "context_length": inf.sglang_maxlen,
        "mem_fraction_static": inf.sglang_mem_fraction,
        "tp_size": inf.sglang_tp_size if inf.sglang_tp_size > 0 else gpu_count(),
        "log_level": "error",
    }
    if m.cache_dir:
        kwargs["download_dir"] = m.cache_dir
    if m.model_revision != "main":
        kwargs["revision"] = m.model_revision
    if adapter:
        kwargs.update(lora_paths=[f"{LORA_NAME}={adapter}"], lora_backend=inf.sglang_lora_backend)
    kwargs.update(merged_extra(inf.sglang_config, "sglang_config"))
    return kwargs


def sampling_dict(params: SamplingParams, max_tokens: int) -> dict[str, Any]:
    """SGLang's `sampling_params` dict equivalent to tuneforge's settings."""
    greedy = params.greedy
    out: dict[str, Any] = {
        "max_new_tokens": max_tokens,
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": -1 if greedy or params.top_k == 0 else params.top_k,
        "stop": list(params.stop),
        "stop_token_ids": sorted(params.stop_token_ids),
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "repetition_penalty": params.repetition_penalty,
        "skip_special_tokens": params.skip_special_tokens,
    }
    if params.seed is not None:
        out["sampling_seed"] = params.seed
    return out


class SGLangClient:
    """One `sglang.Engine` and the `AsyncClient` methods over it."""

    def __init__(self, engine: Any, lora: bool, context_len: int) -> None:
        self.engine, self.lora, self.context_len = engine, lora, context_len
        args = getattr(engine, "server_args", None)
        self.incremental = bool(
            getattr(args, "incremental_streaming_output", False) or getattr(args, "stream_output", False)
        )

    @classmethod
    def start(cls, kwargs: dict[str, Any], lora: bool, context_len: int) -> SGLangClient:
        """Build the engine (call on the backend's event-loop thread: SGLang binds to the running loop)."""
        import sglang

        engine = sglang.Engine(**kwargs)
        if lora:
            logger.info("SGLang applies adapter %s to every request (LoRA, unmerged)", kwargs["lora_paths"][0])
        return cls(engine, lora, context_len)

    async def stream(self, request: GenerationRequest, request_id: str, max_tokens: int) -> AsyncIterator[Chunk]:
        """SGLang's streamed outputs for one request as `Chunk`s (deltas)."""
        outputs = await self.engine.async_generate(
            input_ids=list(request.prompt_ids),
            sampling_params=sampling_dict(request.params, max_tokens),
            lora_path=LORA_NAME if self.lora else None,
            rid=request_id,
            stream=True,
        )
        text_seen, ids_seen = 0, 0
        async for out in outputs:
            text, ids = out.get("text", ""), list(out.get("output_ids") or [])
            if not self.incremental:
                text, ids = text[text_seen:], ids[ids_seen:]
                text_seen, ids_seen = text_seen + len(text), ids_seen + len(ids)
            yield Chunk(text, tuple(ids), _finish_reason(out.get("meta_info", {})))

    async def abort(self, request_id: str) -> None:
        """Abort the SGLang request."""
        self.engine.tokenizer_manager.abort_request(rid=request_id)

    def shutdown(self) -> None:
        """Stop SGLang's scheduler and detokenizer processes."""
        self.engine.shutdown()


def _finish_reason(meta: dict[str, Any]) -> str | None:
    reason = meta.get("finish_reason")
    if reason is None:
        return None
    return reason.get("type", "stop") if isinstance(reason, dict) else str(reason)
