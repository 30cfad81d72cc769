"""Inference engine used by chat, api, webchat and evaluation."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section


class InferenceSection(Section):
    """Inference engine used by chat, api, webchat and evaluation."""

    infer_backend: Literal["huggingface", "vllm", "sglang", "ktransformers"] = F(
        "huggingface",
        "Engine behind chat, api, webchat and prediction; vllm, sglang and ktransformers need GPUs and "
        "their optional packages.",
        wiring=ACTS,
    )
    use_kv_cache: bool = F(
        True,
        "Reuse cached attention keys and values while generating (huggingface backend); much faster, uses memory.",
        wiring=ACTS,
    )
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = F(
        "auto", "Weight dtype for inference; auto follows the model config.", wiring=ACTS
    )
    vllm_maxlen: int = F(4096, "vLLM only (GPU): maximum prompt plus completion length in tokens.", wiring=ACTS)
    vllm_gpu_util: float = F(
        0.7, "vLLM only (GPU): fraction of GPU memory vLLM may claim, between 0 and 1.", wiring=ACTS
    )
    vllm_enforce_eager: bool = F(
        False,
        "vLLM only (GPU): run eagerly instead of capturing CUDA graphs; slower but uses less memory.",
        wiring=ACTS,
    )
    vllm_max_lora_rank: int = F(32, "vLLM only (GPU): largest LoRA rank the engine reserves room for.", wiring=ACTS)
    vllm_config: dict | str | None = F(
        None, "vLLM only (GPU): extra engine arguments, as a dict or a JSON string.", wiring=ACTS
    )
    sglang_maxlen: int = F(4096, "SGLang only (GPU): maximum prompt plus completion length in tokens.", wiring=ACTS)
    sglang_mem_fraction: float = F(
        0.7, "SGLang only (GPU): fraction of GPU memory for weights and KV cache, between 0 and 1.", wiring=ACTS
    )
    sglang_tp_size: int = F(-1, "SGLang only (GPU): tensor-parallel degree; -1 uses every visible GPU.", wiring=ACTS)
    sglang_config: dict | str | None = F(
        None, "SGLang only (GPU): extra server arguments, as a dict or a JSON string.", wiring=ACTS
    )
    sglang_lora_backend: Literal["triton", "flashinfer"] = F(
        "triton", "SGLang only (GPU): kernel backend that applies LoRA adapters.", wiring=ACTS
    )
