"""Writing merged, quantized or converted models with `tuneforge export`."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section


class ExportSection(Section):
    """Writing merged, quantized or converted models with `tuneforge export`."""

    export_dir: str | None = F(
        None, "Directory where `tuneforge export` writes the merged or converted model.", wiring=ACTS
    )
    export_size: int = F(5, "Maximum size of each exported weight shard, in GB.", wiring=ACTS)
    export_device: Literal["cpu", "auto"] = F(
        "cpu",
        "Device used to merge adapters while exporting: cpu (safe default) or auto (GPU if available, faster).",
        wiring=ACTS,
    )
    export_quantization_bit: int | None = F(
        None,
        "Bits per weight (2, 3, 4, 8) for GPTQ quantization of the exported model through gptqmodel on a CUDA GPU; "
        "unset exports unquantized (for a CPU-made quantized export use `quantization_bit`).",
        wiring=ACTS,
    )
    export_quantization_dataset: str | None = F(
        None,
        "Calibration text for GPTQ export quantization: a dataset registered in dataset_info.json (e.g. c4_demo) "
        "or a local data file with a `text` column.",
        wiring=ACTS,
    )
    export_quantization_nsamples: int = F(
        128, "Number of calibration samples used for GPTQ export quantization.", wiring=ACTS
    )
    export_quantization_maxlen: int = F(
        1024, "Maximum length in tokens of each calibration sample for export quantization.", wiring=ACTS
    )
    export_legacy_format: bool = F(False, "Save weights as PyTorch .bin files instead of safetensors.", wiring=ACTS)
    export_hub_model_id: str | None = F(
        None, "Hub repository id to push the exported model to; unset keeps it local.", wiring=ACTS
    )
    export_format: Literal["hf", "gguf"] = F(
        "hf",
        "What `tuneforge export` writes: hf (a Hugging Face folder of safetensors shards, tokenizer and "
        "Modelfile) or gguf (one GGUF file for llama.cpp / Ollama, plus a Modelfile).",
        lf_default=None,
        wiring=ACTS,
    )
    export_gguf_type: Literal["f16", "bf16", "f32", "q8_0", "q4_0"] = F(
        "f16",
        "Weight type of a GGUF export: f16 / bf16 / f32 keep full quality; q8_0 (8-bit) and q4_0 (4-bit) "
        "are smaller and faster on CPU at some quality cost.",
        lf_default=None,
        wiring=ACTS,
    )
