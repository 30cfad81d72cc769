"""FP8 training (`fp8`, `fp8_backend`, `fp8_enable_fsdp_float8_all_gather`) through torchao's float8 linear layers.

FP8 matrix multiplies need an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell). Elsewhere
`check_fp8` stops the run before anything is loaded. `apply_fp8` swaps the model's linear layers for torchao's
`Float8Linear` (inputs and weights cast to float8 per matmul, master weights and optimizer unchanged), skipping
the embeddings, the output head and layers whose sizes are not multiples of 16 (the FP8 kernels need that).
Rowwise scaling is used when the model computes in bfloat16, tensorwise scaling otherwise and for the FSDP float8
all-gather (which only tensorwise scaling supports).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

MIN_CAPABILITY = (8, 9)
BACKENDS = ("auto", "torchao")
SKIPPED_LAYERS = ("embed", "lm_head", "output", "classifier", "score", "v_head")


def wants_fp8(cfg: TuneforgeConfig) -> bool:
    """True when `fp8` is set, or `fp8_enable_fsdp_float8_all_gather` (which implies it, as in LLaMA-Factory)."""
    return bool(cfg.training.fp8 or cfg.training.fp8_enable_fsdp_float8_all_gather)


def check_fp8(cfg: TuneforgeConfig, cuda: bool | None = None) -> None:
    """Stop with a clear message when FP8 is asked for but this machine or install cannot train in FP8."""
    if not wants_fp8(cfg):
        return
    t = cfg.training
    if not t.fp8:
        logger.warning("`fp8_enable_fsdp_float8_all_gather` needs FP8 training: training with `fp8: true`.")
    if t.fp8_backend not in BACKENDS:
        raise TuneforgeError(
            f"`fp8_backend: {t.fp8_backend}` is not available in tuneforge; use `fp8_backend: torchao` (or auto), "
            "which trains in FP8 through torchao's float8 layers."
        )
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if not cuda:
        raise TuneforgeError(
            "`fp8: true` needs an NVIDIA GPU with compute capability 8.9 or newer (Ada, Hopper, Blackwell), and "
            "this machine has no CUDA GPU. Remove `fp8` (train with `bf16: true` instead) or run on such a GPU."
        )
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CAPABILITY:
        raise TuneforgeError(
            f"`fp8: true` needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
            f"{torch.cuda.get_device_name()} has {capability[0]}.{capability[1]}. Remove `fp8` and use `bf16: true`."
        )
    if importlib.util.find_spec("torchao") is None:
        raise TuneforgeError("`fp8: true` trains through torchao, which is not installed: pip install 'tuneforge[fp8]'")


def fp8_layer_filter(module: torch.nn.Module, name: str) -> bool:
    """Whether a linear layer trains in FP8: not embeddings or heads, both sizes multiples of 16."""
    if any(part in name.lower() for part in SKIPPED_LAYERS):
        return False
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        return False
    return weight.shape[0] % 16 == 0 and weight.shape[1] % 16 == 0


def fp8_recipe(cfg: TuneforgeConfig) -> Any:
    """torchao's Float8LinearConfig: rowwise scaling for bfloat16 models, tensorwise (+ FSDP all-gather) else."""
    from torchao.float8 import Float8LinearConfig

    if cfg.training.fp8_enable_fsdp_float8_all_gather:
        return Float8LinearConfig(enable_fsdp_float8_all_gather=True)
    bf16 = cfg.training.bf16 or cfg.method.pure_bf16
    return Float8LinearConfig.from_recipe_name("rowwise" if bf16 else "tensorwise")


def apply_fp8(model: Any, cfg: TuneforgeConfig) -> Any:
    """Swap `model`'s eligible linear layers for torchao Float8Linear in place when FP8 is on; returns the model."""
    if not wants_fp8(cfg):
        return model
    from torchao.float8 import convert_to_float8_training

    convert_to_float8_training(model, config=fp8_recipe(cfg), module_filter_fn=fp8_layer_filter)
    converted = sum(type(m).__name__ == "Float8Linear" for m in model.modules())
    if converted == 0:
        raise TuneforgeError(
            "`fp8: true` found no linear layer to train in FP8 (every size must be a multiple of 16); remove `fp8`."
        )
    logger.info("FP8 training: %d linear layers use torchao float8 matmuls", converted)
    return model
