"""Load the tokenizer and the causal-LM model a config names: dtype, attention kernel, RoPE scaling, quantization
(models/quantization.py).

Heavy libraries are imported inside the functions: this module is only imported by verbs that load models.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from tuneforge.config.require import require
from tuneforge.errors import TuneforgeError
from tuneforge.gc_pause import collector_paused
from tuneforge.models.moe import configure_router_loss
from tuneforge.models.new_tokens import add_configured_tokens, init_new_rows

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

ATTN_IMPLEMENTATIONS = {
    "auto": None,  # let transformers pick (sdpa where available)
    "disabled": "eager",
    "sdpa": "sdpa",
    "fa2": "flash_attention_2",
    "fa3": "flash_attention_3",
}
_FLASH_PACKAGES = {"fa2": "flash_attn", "fa3": "flash_attn_interface"}


def load_tokenizer(cfg: TuneforgeConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of `model_name_or_path`, with a pad token and the config's new tokens (`models/new_tokens.py`)."""
    m = cfg.model
    _require_model_path(cfg)
    options = {
        "revision": m.model_revision,
        "cache_dir": m.cache_dir,
        "split_special_tokens": m.split_special_tokens,
        "token": m.hf_hub_token,
        "use_fast": m.use_fast_tokenizer,
        "trust_remote_code": m.trust_remote_code,
    }
    tokenizer = open_tokenizer(m.model_name_or_path, _direct_tokenizer_class(m.model_name_or_path), **options)
    add_configured_tokens(tokenizer, m)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def open_tokenizer(path: str, direct: type | None, **options: Any) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained(path, **options)`; with `direct` (the class AutoTokenizer picks for `path`,
    see `models/tokenizer_class.py`) that class is loaded as AutoTokenizer loads it, without importing torch."""
    with collector_paused():
        if direct is None:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(path, **options)
        options = {k: v for k, v in options.items() if k not in ("use_fast", "trust_remote_code")}  # its own
        return direct.from_pretrained(path, _from_auto=True, **options)


def _direct_tokenizer_class(path: str) -> type | None:
    """AutoTokenizer's class for a local folder when torch is not imported yet (AutoTokenizer would import it
    just to read the model type); None otherwise: then AutoTokenizer itself is used."""
    if "torch" in sys.modules or not os.path.isdir(path):
        return None
    from tuneforge.models.tokenizer_class import tokenizer_class_for

    return tokenizer_class_for(path)


def attn_implementation(flash_attn: str) -> str | None:
    """Map LLaMA-Factory's `flash_attn` value to transformers' `attn_implementation` (None: transformers picks)."""
    if flash_attn not in ATTN_IMPLEMENTATIONS:
        raise TuneforgeError(f"`flash_attn: {flash_attn}` is unknown; use one of {', '.join(ATTN_IMPLEMENTATIONS)}.")
    package = _FLASH_PACKAGES.get(flash_attn)
    if package and not _cuda_available():
        raise TuneforgeError(f"`flash_attn: {flash_attn}` needs a CUDA GPU; use `flash_attn: sdpa` on this machine.")
    if package and importlib.util.find_spec(package) is None:
        raise TuneforgeError(
            f"`flash_attn: {flash_attn}` needs the `{package}` package (pip install flash-attn); "
            "or set `flash_attn: sdpa`."
        )
    return ATTN_IMPLEMENTATIONS[flash_attn]


def model_dtype(cfg: TuneforgeConfig) -> torch.dtype:
    """The dtype weights are loaded in: bf16/fp16 for pure half training or quantization, else float32.

    Mixed precision (`bf16`/`fp16` without `pure_bf16`) keeps float32 master weights and autocasts.
    """
    import torch

    if cfg.method.pure_bf16:
        return torch.bfloat16
    if cfg.quantization.quantization_bit is not None:
        return torch.float16 if cfg.training.fp16 else torch.bfloat16
    return torch.float32


def rope_parameters(model_config: Any, rope_scaling: str | None, cutoff_len: int) -> dict[str, Any] | None:
    """RoPE parameters that stretch the context to `cutoff_len`, as LLaMA-Factory sets them for training.

    No scaling when `cutoff_len` fits the trained length; else factor = ceil(cutoff_len / trained length) for
    every method (dynamic too), and `max_position_embeddings` grows by that factor (set on `model_config`).
    """
    if rope_scaling is None:
        return None
    current = dict(getattr(model_config, "rope_parameters", None) or {})
    original = current.get("original_max_position_embeddings") or getattr(model_config, "max_position_embeddings", 0)
    if not original:
        logger.warning("`rope_scaling: %s`: no max_position_embeddings in the model config; not scaling.", rope_scaling)
        return None
    if cutoff_len <= original:
        logger.warning("`rope_scaling`: cutoff_len %s fits the trained length %s; not scaling.", cutoff_len, original)
        return None
    factor = float(math.ceil(cutoff_len / original))
    model_config.max_position_embeddings = int(original * factor)
    current.update({"rope_type": rope_scaling, "factor": factor})
    if rope_scaling in ("dynamic", "yarn", "llama3"):
        current["original_max_position_embeddings"] = original
    if rope_scaling == "llama3":
        current.setdefault("low_freq_factor", 1.0)
        current.setdefault("high_freq_factor", 4.0)
    return current


def load_model(cfg: TuneforgeConfig, tokenizer: PreTrainedTokenizerBase, *, trainable: bool) -> PreTrainedModel:
    """Load the base causal-LM or vision-language model (no adapters yet) ready for training or inference."""
    from transformers import AutoConfig

    from tuneforge.models import quantization, shift_attn

    m = cfg.model
    _require_model_path(cfg)
    hub = {"trust_remote_code": m.trust_remote_code, "revision": m.model_revision, "cache_dir": m.cache_dir}
    model_config = AutoConfig.from_pretrained(m.model_name_or_path, token=m.hf_hub_token, **hub)
    rope = rope_parameters(model_config, m.rope_scaling, cfg.data.cutoff_len)
    if rope is not None:
        model_config.rope_parameters = rope
        logger.info("RoPE scaling %s with factor %s", rope["rope_type"], rope["factor"])
    if configure_router_loss(model_config, m.moe_aux_loss_coef, trainable=trainable):
        logger.info("MoE router auxiliary loss on, coefficient %s", m.moe_aux_loss_coef)
    kwargs = {"config": model_config, "dtype": model_dtype(cfg), **hub}
    attn = attn_implementation(m.flash_attn)
    if attn is not None:
        kwargs["attn_implementation"] = attn
    s2_base = shift_attn.check_shift_attn(model_config.model_type, attn) if trainable and m.shift_attn else None
    if m.train_from_scratch:
        auto = _auto_class(model_config)
        model = auto.from_config(**{k: kwargs[k] for k in kwargs if k != "cache_dir"})
    else:
        kwargs.update(quantization.load_kwargs(cfg, model_config))
        model = _from_pretrained(cfg, kwargs)
    if m.mixture_of_depths == "convert":
        from tuneforge.models.mod import convert_to_mod

        model = convert_to_mod(model)
    _fit_vocab(model, tokenizer, m.resize_vocab)
    init_new_rows(model, tokenizer, m.init_special_tokens)
    if s2_base is not None:
        shift_attn.enable_shift_attn(model, s2_base)
    if trainable:
        prepare_for_training(model, cfg)
    else:
        model.eval()
    return model


def _from_pretrained(cfg: TuneforgeConfig, kwargs: dict[str, Any]) -> PreTrainedModel:
    """`from_pretrained` of the model path, or of a mixture-of-depths model (`mixture_of_depths: load`)."""
    from transformers import AutoModelForCausalLM

    from tuneforge.models import mod

    m = cfg.model
    options = {"low_cpu_mem_usage": m.low_cpu_mem_usage, "token": m.hf_hub_token, **kwargs}
    if m.mixture_of_depths == "load":
        return mod.load_mod_model(
            m.model_name_or_path,
            lambda mapping: AutoModelForCausalLM.from_pretrained(m.model_name_or_path, key_mapping=mapping, **options),
        )
    return _auto_class(kwargs["config"]).from_pretrained(m.model_name_or_path, **options)


def _auto_class(model_config: Any) -> Any:
    """The multimodal Auto class for vision- and audio-language models (as LLaMA-Factory loads them), else the
    causal LM."""
    from tuneforge.models.multimodal import auto_model_class

    return auto_model_class(model_config)


def prepare_for_training(model: PreTrainedModel, cfg: TuneforgeConfig) -> None:
    """No KV cache, gradient checkpointing unless disabled, NEFTune is left to the Trainer."""
    model.config.use_cache = False
    if cfg.model.upcast_layernorm:
        _upcast_norms(model)
    if cfg.model.upcast_lmhead_output:
        model.get_output_embeddings().register_forward_hook(_logits_to_float32)
    if cfg.model.disable_gradient_checkpointing or not getattr(model, "supports_gradient_checkpointing", False):
        if cfg.model.use_unsloth_gc:
            logger.warning("`use_unsloth_gc` has no effect: gradient checkpointing is off for this model.")
        return
    kwargs = {"use_reentrant": cfg.model.use_reentrant_gc}
    offload = _offloads_activations(model, cfg.model.use_unsloth_gc)
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
        extra = {"offload": True} if offload else {}
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs, **extra)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()  # reentrant checkpointing needs inputs that require grad (frozen embeddings)


def _offloads_activations(model: Any, wanted: bool) -> bool:
    """Whether checkpointing should keep its activations in pinned host memory (`use_unsloth_gc`): only where an
    accelerator trains (the model is still on the CPU here; without one the activations are in host memory
    already, and pinning needs an accelerator)."""
    if not wanted:
        return False
    if not _accelerator_present():
        logger.warning("`use_unsloth_gc` has no effect on CPU: the activations already live in host memory.")
        return False
    return offload_supported()


def _accelerator_present() -> bool:
    import torch

    return torch.accelerator.is_available()


def offload_supported() -> bool:
    """Whether this transformers offers offloaded activation checkpointing (`activation_checkpointing_enable`'s
    `offload`), which `use_unsloth_gc` uses."""
    import inspect

    from transformers import PreTrainedModel

    enable = getattr(PreTrainedModel, "activation_checkpointing_enable", None)
    return enable is not None and "offload" in inspect.signature(enable).parameters


def _logits_to_float32(module: Any, inputs: Any, output: Any) -> Any:
    """Forward hook for `upcast_lmhead_output`: the language-model head returns float32 logits."""
    import torch

    return output.to(torch.float32)


def _upcast_norms(model: Any) -> None:
    import torch

    for name, param in model.named_parameters():
        if param.ndim == 1 and "norm" in name:
            param.data = param.data.to(torch.float32)


def _fit_vocab(model: Any, tokenizer: Any, resize: bool) -> None:
    """Grow the embeddings when tokens were added (as LLaMA-Factory does) or when `resize_vocab` asks."""
    size = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > size or (resize and len(tokenizer) != size):
        logger.info("Resizing embeddings from %d to %d tokens", size, len(tokenizer))
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)


def _require_model_path(cfg: TuneforgeConfig) -> None:
    require(cfg.model.model_name_or_path, "model_name_or_path")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
