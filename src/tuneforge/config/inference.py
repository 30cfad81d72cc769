"""Inference engine used by chat, api, webchat and evaluation."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class InferenceSection(Section):
    """Inference engine used by chat, api, webchat and evaluation."""

    infer_backend: Literal['huggingface', 'vllm', 'sglang', 'ktransformers'] = F('huggingface', "")
    use_kv_cache: bool = F(True, "")
    infer_dtype: Literal['auto', 'float16', 'bfloat16', 'float32'] = F('auto', "")
    vllm_maxlen: int = F(4096, "")
    vllm_gpu_util: float = F(0.7, "")
    vllm_enforce_eager: bool = F(False, "")
    vllm_max_lora_rank: int = F(32, "")
    vllm_config: dict | str | None = F(None, "")
    sglang_maxlen: int = F(4096, "")
    sglang_mem_fraction: float = F(0.7, "")
    sglang_tp_size: int = F(-1, "")
    sglang_config: dict | str | None = F(None, "")
    sglang_lora_backend: Literal['triton', 'flashinfer'] = F('triton', "")
