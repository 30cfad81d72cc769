"""Load what inference needs: tokenizer, model in the inference dtype, adapters merged, optional value head.

Adapters listed in `adapter_name_or_path` are applied in order; all are merged into the weights (fastest decoding)
except with a quantized base, where the last stays a LoRA layer (merging into 4/8-bit weights loses precision).
A `value_head.safetensors` (LLaMA-Factory's name; keys `v_head.summary.weight` / `.bias`) beside the last adapter
or the model turns the model into a reward model for `score`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    import torch

    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

VALUE_HEAD_FILE = "value_head.safetensors"
_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


def infer_dtype(cfg: TuneforgeConfig, model_config: Any) -> torch.dtype:
    """`infer_dtype`, where `auto` follows the model config on GPU and uses float32 on CPU (half is slow there)."""
    import torch

    name = cfg.inference.infer_dtype
    if name != "auto":
        return getattr(torch, _DTYPES[name])
    if cfg.quantization.quantization_bit is not None:
        return torch.bfloat16
    if not torch.cuda.is_available():
        return torch.float32
    declared = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
    if isinstance(declared, str):
        declared = getattr(torch, declared, None)
    return declared if isinstance(declared, torch.dtype) else torch.bfloat16


def load_for_inference(cfg: TuneforgeConfig, tokenizer: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) ready to decode: eval mode, no gradients, adapters applied (tokenizer loaded if None).

    Vision-language models load with `AutoModelForImageTextToText`, as training loads them."""
    from transformers import AutoConfig

    from tuneforge.models import quantization
    from tuneforge.models.loader import attn_implementation, load_tokenizer
    from tuneforge.models.multimodal import auto_model_class

    m = cfg.model
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
    check_adapter_paths(cfg.model.adapters)
    model_config = AutoConfig.from_pretrained(m.model_name_or_path, trust_remote_code=m.trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": infer_dtype(cfg, model_config), "trust_remote_code": m.trust_remote_code}
    attn = attn_implementation(m.flash_attn)
    if attn is not None:
        kwargs["attn_implementation"] = attn
    quant = quantization.load_kwargs(cfg, model_config)
    kwargs.update(quant)
    model = auto_model_class(model_config).from_pretrained(m.model_name_or_path, **kwargs)
    quantized = bool(getattr(model, "is_quantized", False))
    if not quantized and "device_map" not in quant and _cuda():
        model = model.to("cuda")
    model = apply_adapters(model, cfg.model.adapters, keep_last=quantized)
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer


def apply_adapters(model: Any, paths: list[str], keep_last: bool = False) -> Any:
    """Apply PEFT adapters in order, merging each (the last stays unmerged when `keep_last`)."""
    if not paths:
        return model
    from peft import PeftModel

    check_adapter_paths(paths)
    for index, path in enumerate(paths):
        model = PeftModel.from_pretrained(model, path)
        if keep_last and index == len(paths) - 1:
            logger.info("Loaded adapter %s (kept unmerged over the quantized base)", path)
            return model
        model = model.merge_and_unload()
        logger.info("Merged adapter %s", path)
    return model


def check_adapter_paths(paths: list[str]) -> None:
    """Raise before any weight is read when a local adapter folder named in `adapter_name_or_path` is missing."""
    for path in paths:
        if not Path(path).exists() and "/" not in path:
            raise TuneforgeError(f"adapter_name_or_path: {path!r} does not exist; name a trained adapter folder.")


def find_value_head(cfg: TuneforgeConfig) -> Path | None:
    """The value-head file beside the last adapter or the model folder, if any."""
    folders = [*reversed(cfg.model.adapters), cfg.model.model_name_or_path or ""]
    for folder in folders:
        candidate = Path(folder) / VALUE_HEAD_FILE
        if folder and candidate.is_file():
            return candidate
    return None


def load_value_head(path: Path, hidden_size: int) -> Any:
    """A `torch.nn.Linear(hidden, 1)` holding the reward model's value head."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(path))
    weight, bias = state.get("v_head.summary.weight"), state.get("v_head.summary.bias")
    if weight is None or tuple(weight.shape) != (1, hidden_size):
        raise TuneforgeError(
            f"{path}: expected key v_head.summary.weight of shape (1, {hidden_size}); found keys {sorted(state)}."
        )
    head = torch.nn.Linear(hidden_size, 1, bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight.float())
        if bias is not None:
            head.bias.copy_(bias.float().reshape(1))
    return head.eval()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
