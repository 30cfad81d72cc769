"""On-the-fly quantization of the base model while training or serving (QLoRA)."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section


class QuantizationSection(Section):
    """On-the-fly quantization of the base model while training or serving (QLoRA)."""

    quantization_method: Literal["bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"] = F(
        "bnb",
        "Library used to quantize the model on the fly: bnb (bitsandbytes; CUDA, or CPU with its CPU backend) or "
        "eetq (CUDA, 8-bit); hqq cannot load on transformers 5, and the others name pre-quantized checkpoint "
        "formats, recognised from the checkpoint's config.json without this key.",
        wiring=ACTS,
    )
    quantization_bit: int | None = F(
        None,
        "Bits per weight for on-the-fly quantization (QLoRA: 4 or 8); unset loads the model unquantized. No effect "
        "on a pre-quantized checkpoint. With `tuneforge export`: adapters merge into the dequantized base; without "
        "adapters the model is saved bitsandbytes-quantized.",
        wiring=ACTS,
    )
    quantization_type: Literal["fp4", "nf4"] = F(
        "nf4", "bitsandbytes 4-bit data type: nf4 (NormalFloat, the QLoRA default) or fp4.", wiring=ACTS
    )
    double_quantization: bool = F(
        True,
        "Also quantize the quantization constants in bitsandbytes 4-bit mode, saving a little more memory.",
        wiring=ACTS,
    )
    quantization_device_map: Literal["auto"] | None = F(
        None, "Set to auto to spread a quantized model over available devices (4-bit inference only).", wiring=ACTS
    )
