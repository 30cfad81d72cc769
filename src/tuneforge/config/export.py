"""Writing merged, quantized or converted models with `tuneforge export`."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class ExportSection(Section):
    """Writing merged, quantized or converted models with `tuneforge export`."""

    export_dir: str | None = F(None, "")
    export_size: int = F(5, "")
    export_device: Literal['cpu', 'auto'] = F('cpu', "")
    export_quantization_bit: int | None = F(None, "")
    export_quantization_dataset: str | None = F(None, "")
    export_quantization_nsamples: int = F(128, "")
    export_quantization_maxlen: int = F(1024, "")
    export_legacy_format: bool = F(False, "")
    export_hub_model_id: str | None = F(None, "")
