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
    """Refuse merging adapters into a quantized base before anything is loaded."""
    adapters = cfg.model.adapters
    if not adapters:
        return
    bits = cfg.quantization.quantization_bit
    if bits is not None:
        raise TuneforgeError(
            f"Cannot merge LoRA adapters into a quantized base model (`quantization_bit: {bits}`): merged "
            "weights would be rounded to the quantized grid. Remove `quantization_bit` from the export config "
            "and merge into the full-precision base; quantize the merged model with `export_quantization_bit`."
        )
    base_config = Path(cfg.model.model_name_or_path or "") / "config.json"
    if base_config.is_file() and "quantization_config" in json.loads(base_config.read_text(encoding="utf-8")):
        raise TuneforgeError(
            f"Cannot merge LoRA adapters into {cfg.model.model_name_or_path}: its config.json has a "
            "`quantization_config` (an already-quantized checkpoint). Point `model_name_or_path` at the "
            "full-precision base model the adapters were trained from."
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
    """The base model with every adapter merged in (`merge_and_unload`), in eval mode."""
    from transformers import AutoModelForCausalLM

    m = cfg.model
    kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg), "trust_remote_code": m.trust_remote_code}
    if cfg.export.export_device == "auto" and _cuda():
        kwargs["device_map"] = "auto"
    quant = _base_quantization(cfg)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": 0})
    model = AutoModelForCausalLM.from_pretrained(
        m.model_name_or_path, revision=m.model_revision, cache_dir=m.cache_dir, token=m.hf_hub_token, **kwargs
    )
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


def _base_quantization(cfg: TuneforgeConfig) -> Any:
    """bitsandbytes config for exporting a quantized base without adapters (LLaMA-Factory allows this)."""
    if cfg.quantization.quantization_bit is None:
        return None
    from tuneforge.models.loader import quantization_config

    return quantization_config(cfg)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
