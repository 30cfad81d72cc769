"""Vision- and audio-language models: which class loads them and which of their parts train.

A composite model has a vision (or audio) tower, a projector into the language model, and the language model. As in
LLaMA-Factory, an audio model's audio encoder counts as its "vision tower". The method settings
`freeze_vision_tower` (default on), `freeze_multi_modal_projector` (default on) and
`freeze_language_model` name parts that stay frozen, as LLaMA-Factory does: full and freeze tuning leave their
parameters frozen (freeze tuning also trains the projector when it is not frozen), and LoRA never adapts a
linear layer inside them (so by default LoRA adapts only the language model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config.method import MethodSection


@dataclass(frozen=True)
class Composite:
    """Where a model type keeps its parts (substrings of parameter and module names)."""

    projector: tuple[str, ...]
    vision: tuple[str, ...]
    language: tuple[str, ...]
    lora_conflicts: tuple[str, ...] = ()  # modules LoRA cannot adapt (Qwen-VL's patch embedding is a Conv3d)


_QWEN_VL = Composite(
    projector=("visual.merger",),
    vision=("visual.patch_embed", "visual.blocks"),
    language=("language_model", "lm_head"),
    lora_conflicts=("patch_embed",),
)
COMPOSITES: dict[str, Composite] = {
    "qwen2_vl": _QWEN_VL,
    "qwen2_5_vl": _QWEN_VL,
    "qwen3_vl": Composite(
        projector=("visual.merger", "visual.deepstack_merger_list"),
        vision=("visual.patch_embed", "visual.blocks", "visual.pos_embed"),
        language=("language_model", "lm_head"),
        lora_conflicts=("patch_embed",),
    ),
    "llava": Composite(("multi_modal_projector",), ("vision_tower",), ("language_model", "lm_head")),
    "llava_next": Composite(("multi_modal_projector",), ("vision_tower",), ("language_model", "lm_head")),
    "gemma3": Composite(("multi_modal_projector",), ("vision_tower",), ("language_model", "lm_head")),
    "qwen2_audio": Composite(("multi_modal_projector",), ("audio_tower",), ("language_model", "lm_head")),
    "qwen2_5_omni_thinker": Composite(  # the audio encoder (with its output projection) counts as vision tower
        projector=("visual.merger", "audio_tower.proj"),
        vision=("visual.patch_embed", "visual.blocks", "audio_tower"),
        language=("language_model", "lm_head"),
        lora_conflicts=("patch_embed",),
    ),
}


def composite_of(model: Any) -> Composite | None:
    """The part layout of a vision-language model (None for text-only models)."""
    return COMPOSITES.get(getattr(model.config, "model_type", ""))


def is_image_text_config(model_config: Any) -> bool:
    """Whether transformers loads this config with `AutoModelForImageTextToText` (a vision-language model)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    kind = type(model_config)
    return kind in AutoModelForImageTextToText._model_mapping and kind not in AutoModelForCausalLM._model_mapping


def is_audio_text_config(model_config: Any) -> bool:
    """Whether this is an audio-language model, which transformers (and LLaMA-Factory) load with
    `AutoModelForSeq2SeqLM` (e.g. Qwen2-Audio; it is no encoder-decoder text model, but that is its mapping)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    kind = type(model_config)
    return (
        kind in AutoModelForSeq2SeqLM._model_mapping
        and kind not in AutoModelForCausalLM._model_mapping
        and hasattr(model_config, "audio_config")
    )


def media_auto_class(model_config: Any) -> Any:
    """The transformers Auto class of a multimodal model (`AutoModelForImageTextToText` for vision-language,
    `AutoModelForSeq2SeqLM` for audio-language models, in LLaMA-Factory's order), or None for a text model."""
    from transformers import AutoModelForImageTextToText, AutoModelForSeq2SeqLM

    if is_image_text_config(model_config):
        return AutoModelForImageTextToText
    return AutoModelForSeq2SeqLM if is_audio_text_config(model_config) else None


def auto_model_class(model_config: Any) -> Any:
    """The Auto class that loads this model: the multimodal one (`media_auto_class`), else the causal LM."""
    from transformers import AutoModelForCausalLM

    return media_auto_class(model_config) or AutoModelForCausalLM


def frozen_parts(model: Any, method: MethodSection) -> tuple[str, ...]:
    """Name substrings of the parts the method settings keep frozen (empty for text-only models)."""
    parts = composite_of(model)
    if parts is None:
        return ()
    frozen: list[str] = []
    if method.freeze_vision_tower:
        frozen += parts.vision
    if method.freeze_multi_modal_projector:
        frozen += parts.projector
    if method.freeze_language_model:
        frozen += parts.language
    return tuple(frozen)


def open_projector(model: Any, method: MethodSection) -> None:
    """Freeze tuning: the projector trains too when `freeze_multi_modal_projector` is off (as LLaMA-Factory)."""
    parts = composite_of(model)
    if parts is None or method.freeze_multi_modal_projector:
        return
    for name, param in model.named_parameters():
        if any(part in name for part in parts.projector):
            param.requires_grad_(True)


def freeze_parts(model: Any, method: MethodSection) -> None:
    """Switch off gradients of the frozen parts (after full or freeze tuning chose what trains)."""
    frozen = frozen_parts(model, method)
    for name, param in model.named_parameters():
        if any(part in name for part in frozen):
            param.requires_grad_(False)


def lora_module_names(model: Any, leaves: list[str], method: MethodSection) -> list[str] | None:
    """Full names of the modules LoRA adapts: those with a leaf in `leaves` outside the frozen parts (None for
    text-only models, where the leaf names themselves are PEFT's targets)."""
    parts = composite_of(model)
    if parts is None:
        return None
    skip = (*frozen_parts(model, method), *parts.lora_conflicts)
    return [
        name
        for name, module in model.named_modules()
        if name.split(".")[-1] in leaves
        and next(module.children(), None) is None  # a layer, not a block that shares a leaf name such as `0`
        and not any(part in name for part in skip)
    ]
