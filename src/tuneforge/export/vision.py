"""Exporting vision-language models: what differs from a text model, and where Ollama and llama.cpp stop.

A merged vision-language model is written as the same architecture (`...ForConditionalGeneration`, loadable with
`AutoModelForImageTextToText`) with its processor configs beside it, and keeps the processor's own chat template:
that template renders image and video parts (`{"type": "image"}`) the way the processor expects, which the
training template's Jinja (text turns only) does not.

Ollama's `ollama create` converts a safetensors folder only for the architectures its converter knows
(`convert/convert.go` in the Ollama repository); for vision-language models these are listed in
`OLLAMA_VISION`. tuneforge's own GGUF writer converts text models only; llama.cpp runs a vision-language model
as two GGUF files (the language model and an `mmproj` file with the vision tower and projector), which its
`convert_hf_to_gguf.py` writes (`--mmproj` for the second one).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

# Architectures (config.json `architectures[0]`) whose safetensors folders `ollama create` converts with their
# vision tower (Ollama's convert/convert.go).
OLLAMA_VISION = (
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
    "Qwen3VLMoeForConditionalGeneration",
    "Gemma3ForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "Llama4ForConditionalGeneration",
    "MllamaForConditionalGeneration",
)


def vision_architecture(model_config: Any) -> str | None:
    """The architecture name of a multimodal (vision- or audio-language) model config (None for a text model)."""
    from tuneforge.models.multimodal import media_auto_class

    if media_auto_class(model_config) is None:
        return None
    names = getattr(model_config, "architectures", None) or [type(model_config).__name__]
    return str(names[0])


def base_vision_architecture(cfg: TuneforgeConfig) -> str | None:
    """`vision_architecture` of the base model the config exports, read from its config alone (None also when the
    config cannot be read here: loading the model then says why)."""
    from transformers import AutoConfig

    m = cfg.model
    hub = {"revision": m.model_revision, "cache_dir": m.cache_dir, "token": m.hf_hub_token}
    try:
        model_config = AutoConfig.from_pretrained(m.model_name_or_path, trust_remote_code=m.trust_remote_code, **hub)
    except (OSError, ValueError):
        return None
    return vision_architecture(model_config)


def check_vision_export(cfg: TuneforgeConfig, arch: str) -> None:
    """Refuse what a vision-language export cannot do, before the model is loaded."""
    e = cfg.export
    if e.export_format == "gguf":
        raise TuneforgeError(
            f"`export_format: gguf`: {arch} is a vision-language model, and tuneforge's GGUF writer converts "
            "text models only (llama, qwen2, qwen3). llama.cpp runs such a model as two GGUF files, the language "
            "model and an `mmproj` file with the vision tower, which its convert_hf_to_gguf.py writes (the second "
            "with `--mmproj`). Export with `export_format: hf` and convert that folder with llama.cpp."
        )
    if e.export_quantization_bit is not None:
        raise TuneforgeError(
            f"`export_quantization_bit: {e.export_quantization_bit}`: GPTQ export quantization of a "
            f"vision-language model ({arch}) is not supported (its calibration would need images as well as "
            "text). Export unquantized (remove `export_quantization_bit`), or export a bitsandbytes-quantized "
            "model with `quantization_bit: 4` or `8` (merge the adapters first: that export takes no adapters)."
        )


def ollama_note(arch: str) -> str:
    """What Ollama does with an exported vision-language model folder (a Modelfile comment and a console line)."""
    if arch in OLLAMA_VISION:
        return (
            f"{arch} is a multimodal model: `ollama create` has a converter for this architecture, vision "
            "tower included (written for the published checkpoints' tensor names); the TEMPLATE below renders the "
            "text turns, Ollama places the images."
        )
    return (
        f"{arch} is a multimodal model that Ollama cannot import: `ollama create` has no converter for "
        f"this architecture (it has for {', '.join(a.split('For')[0] for a in OLLAMA_VISION)}). llama.cpp's "
        "convert_hf_to_gguf.py converts many vision-language models (Qwen2-VL among them) into a language-model "
        "GGUF plus a `--mmproj` vision GGUF for llama-mtmd-cli / llama-server. This Modelfile is for reference."
    )
