"""Quantized models: on-the-fly quantization (`quantization_bit`, QLoRA) and pre-quantized checkpoints.

`load_kwargs(cfg, model_config)` gives the `from_pretrained` keyword arguments for both cases, after checking,
before any weight is read, that the package and the hardware the format needs are here. A pre-quantized
checkpoint is recognised by the `quantization_config` of its config.json and loaded through transformers'
own quantizer; `quantization_bit` then has no effect (as in LLaMA-Factory) and a warning says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """What loading one quantization format needs: Python modules, the tuneforge extra, and a CUDA GPU or not."""

    modules: tuple[str, ...]
    extra: str
    cuda_only: bool = False
    note: str = ""


# `quant_method` of a checkpoint's quantization_config -> what loading it needs (transformers 5.x quantizers).
PREQUANTIZED: dict[str, Format] = {
    "bitsandbytes": Format(("bitsandbytes",), "bnb"),
    "gptq": Format(("gptqmodel", "optimum"), "gptq", note="gptqmodel builds kernels for your torch/CUDA"),
    "awq": Format(("gptqmodel",), "awq", note="transformers 5 runs AWQ through gptqmodel's kernels"),
    "aqlm": Format(("aqlm",), "aqlm"),
    "compressed-tensors": Format(("compressed_tensors",), "compressed-tensors"),
    "eetq": Format(("eetq",), "eetq", cuda_only=True),
    "quanto": Format(("optimum.quanto",), "quanto"),
    "torchao": Format(("torchao",), "torchao"),
    "fp8": Format((), "", note="dequantized to the load dtype, as LLaMA-Factory does"),
    "mxfp4": Format((), "", note="dequantized to the load dtype, as LLaMA-Factory does"),
}
# On-the-fly `quantization_method`s tuneforge applies, and why the others are refused.
ON_THE_FLY_REFUSED = {
    "hqq": "transformers 5 cannot load models through HQQ yet (its quantizer raises NotImplementedError)",
}


def prequantized_method(model_config: Any) -> str | None:
    """The `quant_method` of an already-quantized checkpoint's config, or None for a full-precision one."""
    quant = getattr(model_config, "quantization_config", None)
    if not quant:
        return None
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    method = getattr(method, "value", method)
    return str(method or "unknown")


def check_prequantized(method: str, cfg: TuneforgeConfig) -> None:
    """Stop, naming the package or hardware, when this machine cannot load a `method`-quantized checkpoint."""
    fmt = PREQUANTIZED.get(method)
    where = f"{cfg.model.model_name_or_path} is a {method}-quantized checkpoint (config.json `quantization_config`)"
    if fmt is None:
        logger.warning("%s; tuneforge has not tested this format, transformers' quantizer loads it.", where)
        return
    if fmt.cuda_only and not cuda_available():
        raise TuneforgeError(f"{where}: its kernels need a CUDA GPU and this machine has none; load it on a GPU.")
    missing = [m for m in fmt.modules if not _installed(m)]
    if missing:
        note = f" ({fmt.note})" if fmt.note else ""
        raise TuneforgeError(
            f"{where}: loading it needs the {', '.join(f'`{m}`' for m in missing)} package{'s' * (len(missing) > 1)}"
            f": pip install 'tuneforge[{fmt.extra}]'{note}."
        )
    if method == "bitsandbytes":
        check_bnb_device(where)
    if cfg.quantization.quantization_bit is not None:
        logger.warning(
            "`quantization_bit: %s` has no effect: %s and is loaded as it is.", cfg.quantization.quantization_bit, where
        )


def check_quantization(cfg: TuneforgeConfig) -> None:
    """Every quantization check that needs no weights: run before data or model loading starts."""
    method = prequantized_method(_local_config(cfg.model.model_name_or_path or ""))
    if method is not None:
        check_prequantized(method, cfg)
        _check_sharding(method, cfg)
    else:
        quantization_config(cfg)


def _check_sharding(method: str, cfg: TuneforgeConfig) -> None:
    """ZeRO-3 and FSDP shard weights, which pre-quantized ones cannot be (fp8 / mxfp4 are dequantized first)."""
    t = cfg.training
    if method in ("fp8", "mxfp4") or not (t.fsdp or t.deepspeed):
        return
    from tuneforge.train.ds_config import load_deepspeed

    zero3 = bool(t.deepspeed) and load_deepspeed(t.deepspeed).get("zero_optimization", {}).get("stage") == 3
    if t.fsdp or zero3:
        raise TuneforgeError(
            f"{cfg.model.model_name_or_path} is {method}-quantized: DeepSpeed ZeRO-3 and FSDP cannot shard "
            "pre-quantized weights. Train with DDP or ZeRO-2 (`deepspeed: z2`), or from the full-precision model."
        )


def _local_config(path: str) -> Any:
    """The config.json of a local model folder as a namespace (None for a Hub id or a missing file)."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    return SimpleNamespace(**json.loads(config.read_text(encoding="utf-8")))


def quantization_config(cfg: TuneforgeConfig) -> Any | None:
    """A transformers quantization config for `quantization_bit` (on-the-fly quantization), or None."""
    q = cfg.quantization
    if q.quantization_bit is None:
        return None
    method = q.quantization_method
    if method == "bnb":
        return _bnb_config(cfg)
    if method in ON_THE_FLY_REFUSED:
        raise TuneforgeError(f"`quantization_method: {method}` cannot be used here: {ON_THE_FLY_REFUSED[method]}.")
    if method == "eetq":
        if not cuda_available():
            raise TuneforgeError(
                "`quantization_method: eetq` needs a CUDA GPU (EETQ has only CUDA kernels) and this machine has "
                "none; use `quantization_method: bnb`, which also runs on CPU."
            )
        _require("eetq", "quantization_method: eetq")
        if q.quantization_bit != 8:
            raise TuneforgeError("`quantization_method: eetq` supports only `quantization_bit: 8`.")
        from transformers import EetqConfig

        return EetqConfig()
    raise TuneforgeError(
        f"`quantization_method: {method}` does not quantize on the fly; use bnb (bitsandbytes) or eetq with "
        f"`quantization_bit`, or point `model_name_or_path` at a {method}-quantized checkpoint."
    )


def load_kwargs(cfg: TuneforgeConfig, model_config: Any) -> dict[str, Any]:
    """`from_pretrained` arguments for a quantized load (empty for a full-precision one); checks run first."""
    method = prequantized_method(model_config)
    if method is not None:
        check_prequantized(method, cfg)
        return _prequantized_kwargs(method)
    quant = quantization_config(cfg)
    if quant is None:
        return {}
    kwargs: dict[str, Any] = {"quantization_config": quant, "device_map": {"": device()}}
    if cfg.quantization.quantization_device_map == "auto":  # spread over devices for inference, offloading the rest
        kwargs.update(device_map="auto", offload_folder=cfg.model.offload_folder)
    return kwargs


def _prequantized_kwargs(method: str) -> dict[str, Any]:
    """LLaMA-Factory's handling: fp8 / mxfp4 checkpoints are dequantized; others load with their own config."""
    if method == "fp8":
        from transformers import FineGrainedFP8Config

        return {"quantization_config": FineGrainedFP8Config(dequantize=True), "ignore_mismatched_sizes": True}
    if method == "mxfp4":
        from transformers import Mxfp4Config

        return {"quantization_config": Mxfp4Config(dequantize=True), "ignore_mismatched_sizes": True}
    return {"device_map": {"": device()}} if method in ("bitsandbytes", "eetq") else {}


def check_bnb_device(setting: str) -> None:
    """bitsandbytes runs on a CUDA GPU, or on CPU from the releases with a CPU backend; stop otherwise."""
    if cuda_available() or importlib.util.find_spec("bitsandbytes.backends.cpu") is not None:
        return
    raise TuneforgeError(
        f"{setting} (bitsandbytes) needs a CUDA GPU, or a bitsandbytes release with a CPU backend "
        "(pip install -U 'tuneforge[bnb]'); this machine has no CUDA device and the installed bitsandbytes "
        "has no CPU backend."
    )


def _bnb_config(cfg: TuneforgeConfig) -> Any:
    q = cfg.quantization
    bits = q.quantization_bit
    if bits not in (4, 8):
        raise TuneforgeError(f"`quantization_bit: {bits}` is not supported by bitsandbytes; use 4 or 8.")
    if q.quantization_device_map == "auto" and bits != 4:
        raise TuneforgeError("`quantization_device_map: auto` needs `quantization_bit: 4` (bitsandbytes).")
    _require("bitsandbytes", f"quantization_bit: {bits}")
    check_bnb_device(f"`quantization_bit: {bits}`")
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    dtype = compute_dtype(cfg)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quantization_type,
        bnb_4bit_use_double_quant=q.double_quantization,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,  # the storage dtype FSDP needs to shard QLoRA weights
    )


def compute_dtype(cfg: TuneforgeConfig) -> Any:
    """The dtype quantized layers compute in: float16 with `fp16`, else bfloat16."""
    import torch

    return torch.float16 if cfg.training.fp16 else torch.bfloat16


def device() -> int | str:
    """Where a quantized model is placed: this process's GPU (`LOCAL_RANK`), else the CPU."""
    return int(os.environ.get("LOCAL_RANK", "0")) if cuda_available() else "cpu"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    import torch

    return torch.cuda.is_available()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _require(module: str, setting: str) -> None:
    from tuneforge.extras import require

    require(module, setting)
