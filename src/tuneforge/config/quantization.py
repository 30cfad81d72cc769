"""On-the-fly quantization of the base model while training or serving (QLoRA)."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class QuantizationSection(Section):
    """On-the-fly quantization of the base model while training or serving (QLoRA)."""

    quantization_method: Literal['bnb', 'gptq', 'awq', 'aqlm', 'quanto', 'eetq', 'hqq', 'mxfp4', 'fp8'] = F('bnb', "")
    quantization_bit: int | None = F(None, "")
    quantization_type: Literal['fp4', 'nf4'] = F('nf4', "")
    double_quantization: bool = F(True, "")
    quantization_device_map: Literal['auto'] | None = F(None, "")
