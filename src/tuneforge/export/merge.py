"""Load the base model and fold its LoRA adapters into the weights (several adapters merge in order).

Plain transformers + PEFT: the export must not depend on training-time settings (gradient checkpointing,
upcasting); it loads the weights in `infer_dtype` on `export_device` and returns an ordinary model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    import torch

    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


def check_mergeable(cfg: TuneforgeConfig) -> None:
    """Refuse merging adapters into a base that cannot be dequantized, before anything is loaded.

    A bitsandbytes base (`quantization_bit` with `quantization_method: bnb`, or a bitsandbytes-saved checkpoint)
    is dequantized and the adapters merged into those weights: the merged model computes what the QLoRA run
    trained. Other quantized bases have no dequantization in transformers and are refused.
    """
    adapters = cfg.model.adapters
    if not adapters:
        return
    bits, method = cfg.quantization.quantization_bit, cfg.quantization.quantization_method
    if bits is not None and method != "bnb":
        raise TuneforgeError(
            f"Cannot merge LoRA adapters into a {method}-quantized base (`quantization_bit: {bits}`): only "
            "bitsandbytes weights can be dequantized first. Remove `quantization_bit` to merge into the "
            "full-precision base."
        )
    prequantized = _checkpoint_quant_method(cfg.model.model_name_or_path or "")
    if prequantized not in (None, "bitsandbytes"):
        raise TuneforgeError(
            f"Cannot merge LoRA adapters into {cfg.model.model_name_or_path}: it is a {prequantized}-quantized "
            "checkpoint (config.json `quantization_config`); tuneforge dequantizes only bitsandbytes bases. Point "
            "`model_name_or_path` at the full-precision base model the adapters were trained from."
        )
    for path in adapters:
        local = Path(path)
        if local.exists() and not (local / "adapter_config.json").is_file():
            raise TuneforgeError(
                f"`adapter_name_or_path`: {path} has no adapter_config.json; name the folder a LoRA training "
                "run wrote (its `output_dir` or one of its checkpoint-N folders)."
            )


def torch_dtype(cfg: TuneforgeConfig) -> torch.dtype | str:
    """`infer_dtype` as a torch dtype; `auto` keeps the checkpoint's own dtype."""
    import torch

    name = cfg.inference.infer_dtype
    return "auto" if name == "auto" else getattr(torch, DTYPES[name])


def load_merged(cfg: TuneforgeConfig) -> Any:
    """The base model (a vision-language one as `AutoModelForImageTextToText`) with every adapter merged in
    (`merge_and_unload`), in eval mode."""
    from transformers import AutoConfig

    from tuneforge.models import quantization
    from tuneforge.models.multimodal import auto_model_class

    m = cfg.model
    kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg), "trust_remote_code": m.trust_remote_code}
    if cfg.export.export_device == "auto" and _cuda():
        kwargs["device_map"] = "auto"
    hub = {"revision": m.model_revision, "cache_dir": m.cache_dir, "token": m.hf_hub_token}
    model_config = AutoConfig.from_pretrained(m.model_name_or_path, trust_remote_code=m.trust_remote_code, **hub)
    quant = quantization.load_kwargs(cfg, model_config)
    if quant and cfg.model.adapters:
        quant["device_map"] = {"": "cpu"}  # dequantized on CPU: the merged weights are written from there
    kwargs.update(quant)
    model = auto_model_class(model_config).from_pretrained(m.model_name_or_path, **hub, **kwargs)
    if getattr(model, "is_quantized", False) and cfg.model.adapters:
        model = dequantized(model, kwargs["dtype"])
    for path in cfg.model.adapters:
        model = merge_adapter(model, path)
    model.eval()
    return model


def merge_adapter(model: Any, path: str) -> Any:
    """Apply the LoRA adapter at `path` and fold it into the base weights."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, path)
    except (OSError, ValueError) as exc:
        raise TuneforgeError(f"`adapter_name_or_path`: cannot load the adapter {path}: {exc}") from exc
    logger.info("Merging adapter %s", path)
    return peft_model.merge_and_unload()


def dequantized(model: Any, dtype: Any) -> Any:
    """The quantized model with its quantized layers turned back into plain `nn.Linear` weights in `dtype`."""
    import torch

    target = model.dtype if dtype == "auto" or not isinstance(dtype, torch.dtype) else dtype
    logger.info("Dequantizing the %s base to %s before merging", model.config.quantization_config.quant_method, target)
    model = model.dequantize(dtype=target)
    return model.to(target)


def _checkpoint_quant_method(path: str) -> str | None:
    """The `quant_method` in a local checkpoint's config.json (None: not quantized, or not a local folder)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    quant = json.loads(config.read_text(encoding="utf-8")).get("quantization_config")
    return str(quant.get("quant_method", "unknown")) if isinstance(quant, dict) else None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
