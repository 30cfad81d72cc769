"""The vLLM backend (`infer_backend: vllm`): tuneforge's prompts and sampling settings on vLLM's async engine.

Written against vLLM 0.11 (V1 engine, where `vllm.AsyncLLMEngine` is `vllm.v1.engine.async_llm.AsyncLLM`) and
compatible with vLLM >= 0.8: `AsyncEngineArgs(...)`, `AsyncLLMEngine.from_engine_args(args)`,
`engine.generate(prompt, sampling_params, request_id, lora_request=...)` (an async generator of `RequestOutput`),
`engine.abort(request_id)`, `engine.shutdown()`, `SamplingParams(..., output_kind=RequestOutputKind.DELTA)` and
`LoRARequest(lora_name, lora_int_id, lora_path)`.

Prompts are the token ids tuneforge's template produced (`{"prompt_token_ids": ids}`), so the model sees exactly
the training format; vLLM only detokenizes. vLLM applies one LoRA adapter per request: with several
`adapter_name_or_path` entries tuneforge refuses and says how to merge the first ones (`tuneforge export`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError
from tuneforge.infer.async_backend import (
    AsyncLoopBackend,
    Chunk,
    gpu_count,
    merged_extra,
    require_cuda,
    require_package,
)
from tuneforge.infer.params import SamplingParams

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tuneforge.config import TuneforgeConfig
    from tuneforge.infer.requests import GenerationRequest

logger = logging.getLogger(__name__)

INSTALL = "pip install 'tuneforge[vllm]'"
LORA_NAME = "tuneforge-adapter"


def check(cfg: TuneforgeConfig) -> str | None:
    """Raise ConfigError when vllm is missing, no GPU is visible or several adapters are listed; the adapter."""
    require_package("vllm", "vllm", INSTALL)
    require_cuda("vllm")
    return single_adapter(cfg, "vllm")


def build_backend(cfg: TuneforgeConfig) -> AsyncLoopBackend:
    """A running vLLM backend for the config (checks the package, the GPU and the adapters first)."""
    adapter = check(cfg)
    args = engine_args(cfg)
    return AsyncLoopBackend(
        lambda: VLLMClient.start(args, adapter, cfg.inference.vllm_maxlen),
        name="vllm",
        max_queue_size=cfg.server.max_queue_size,
    )


def single_adapter(cfg: TuneforgeConfig, backend: str) -> str | None:
    """The one adapter folder to apply per request (None without adapters); refuses several."""
    paths = cfg.model.adapters
    if len(paths) > 1:
        raise ConfigError(
            f"`adapter_name_or_path` lists {len(paths)} adapters, but `infer_backend: {backend}` applies one LoRA "
            "adapter per request. Merge all but the last into the base model first (`tuneforge export` with "
            "`adapter_name_or_path` set to those adapters and an `export_dir`), then set `model_name_or_path` to "
            f"that export and `adapter_name_or_path: {paths[-1]}`; or use `infer_backend: huggingface`, which "
            "merges them all."
        )
    return paths[0] if paths else None


def engine_args(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Keyword arguments for `vllm.AsyncEngineArgs` from the model and inference sections (+ `vllm_config`)."""
    m, inf = cfg.model, cfg.inference
    args: dict[str, Any] = {
        "model": m.model_name_or_path,
        "trust_remote_code": m.trust_remote_code,
        "download_dir": m.cache_dir,
        "dtype": inf.infer_dtype,
        "max_model_len": inf.vllm_maxlen,
        "tensor_parallel_size": gpu_count(),
        "gpu_memory_utilization": inf.vllm_gpu_util,
        "enforce_eager": inf.vllm_enforce_eager,
        "disable_log_stats": True,
    }
    if m.model_revision != "main":
        args["revision"] = m.model_revision
    if cfg.model.adapters:
        args.update(enable_lora=True, max_loras=1, max_lora_rank=inf.vllm_max_lora_rank)
    args.update(merged_extra(inf.vllm_config, "vllm_config"))
    return args


def sampling_kwargs(params: SamplingParams, max_tokens: int) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` equivalent to tuneforge's settings (one sequence)."""
    greedy = params.greedy
    return {
        "n": 1,
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": -1 if greedy or params.top_k == 0 else params.top_k,
        "max_tokens": max_tokens,
        "stop": list(params.stop),
        "stop_token_ids": sorted(params.stop_token_ids),
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "repetition_penalty": params.repetition_penalty,
        "seed": params.seed,
        "skip_special_tokens": params.skip_special_tokens,
    }


class VLLMClient:
    """One vLLM `AsyncLLMEngine`, the LoRA request (if any) and the `AsyncClient` methods over them."""

    def __init__(self, engine: Any, lora_request: Any, context_len: int) -> None:
        self.engine, self.lora_request, self.context_len = engine, lora_request, context_len

    @classmethod
    def start(cls, args: dict[str, Any], adapter: str | None, context_len: int) -> VLLMClient:
        """Build the engine (call on the backend's event-loop thread)."""
        from vllm import AsyncEngineArgs, AsyncLLMEngine
        from vllm.lora.request import LoRARequest

        engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**args))
        lora = LoRARequest(LORA_NAME, 1, adapter) if adapter else None
        if adapter:
            logger.info("vLLM applies adapter %s to every request (LoRA, unmerged)", adapter)
        return cls(engine, lora, context_len)

    async def stream(self, request: GenerationRequest, request_id: str, max_tokens: int) -> AsyncIterator[Chunk]:
        """vLLM's delta outputs for one request as `Chunk`s."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = VLLMSamplingParams(**sampling_kwargs(request.params, max_tokens), output_kind=RequestOutputKind.DELTA)
        prompt = {"prompt_token_ids": list(request.prompt_ids)}
        async for output in self.engine.generate(prompt, params, request_id, lora_request=self.lora_request):
            completion = output.outputs[0]
            reason = (completion.finish_reason or "stop") if output.finished else None
            yield Chunk(completion.text, tuple(completion.token_ids), reason)

    async def abort(self, request_id: str) -> None:
        """Abort the vLLM request."""
        await self.engine.abort(request_id)

    def shutdown(self) -> None:
        """Stop vLLM's engine core (frees the GPU)."""
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
