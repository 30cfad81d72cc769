"""The text architectures `make-tiny` builds beyond Qwen2/Qwen3/Llama, as data (no torch or transformers import).

Each record names the transformers `model_type`, the tokenizer family it ships with (tuneforge's offline Qwen2
tokenizer with its ChatML chat template; `qwen3` adds `<think>`) and the config fields that make the tiny model the
architecture under test: mixture-of-experts sizes, multi-head latent attention ranks. Fields not named keep the
transformers config class's defaults, which follow the real checkpoints. Sizes that scale with the model (hidden,
layers, heads) come from `tiny.build_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Mixture-of-experts blocks of the tiny models: 4 experts, 2 routed per token, expert width 32
_ROUTED = {"num_experts_per_tok": 2, "moe_intermediate_size": 32}
# DeepSeek-V3: the first layer dense, then MoE with one shared expert; one expert group; small MLA ranks
_DEEPSEEK = {
    **_ROUTED,
    "n_routed_experts": 4,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
    "q_lora_rank": 24,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "v_head_dim": 16,
    "head_dim": 8,  # the rotary part of each head (qk_rope_head_dim)
}


@dataclass(frozen=True)
class TinyArch:
    """One buildable architecture: transformers model type, tokenizer family, fixed config fields."""

    model_type: str
    family: str
    mimics: str
    fields: dict[str, Any] = field(default_factory=dict)
    moe: bool = False
    sets_head_dim: bool = True  # False where the config derives head_dim itself (Phi-3)
    kv_heads_are_heads: bool = False  # multi-head latent attention: keys and values have every head


TEXT_ARCHES: dict[str, TinyArch] = {
    "mistral": TinyArch("mistral", "qwen2", "Mistral-7B-v0.3", {"sliding_window": None}),
    "gemma2": TinyArch("gemma2", "qwen2", "gemma-2-2b-it"),
    "gemma3": TinyArch("gemma3_text", "qwen2", "gemma-3-1b-it (text)"),
    "phi3": TinyArch("phi3", "qwen2", "Phi-3-mini-4k-instruct", sets_head_dim=False),
    "glm4": TinyArch("glm4", "qwen2", "GLM-4-9B-0414"),
    "qwen2_moe": TinyArch(
        "qwen2_moe",
        "qwen2",
        "Qwen1.5-MoE-A2.7B",
        {**_ROUTED, "num_experts": 4, "shared_expert_intermediate_size": 64},
        moe=True,
    ),
    "qwen3_moe": TinyArch("qwen3_moe", "qwen3", "Qwen3-30B-A3B", {**_ROUTED, "num_experts": 4}, moe=True),
    "deepseek_v3": TinyArch(
        "deepseek_v3", "qwen2", "DeepSeek-V3 (MoE + latent attention)", _DEEPSEEK, moe=True, kv_heads_are_heads=True
    ),
    "gpt_oss": TinyArch("gpt_oss", "qwen3", "gpt-oss-20b", {"num_local_experts": 4, "num_experts_per_tok": 2}, True),
}


def tokenizer_family(arch: str) -> str:
    """Tokenizer family of an arch name or model type: the name itself for qwen2/qwen3/llama."""
    for name, record in TEXT_ARCHES.items():
        if arch in (name, record.model_type):
            return record.family
    return arch
