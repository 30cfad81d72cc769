"""Tiny random LLaVA-1.5, LLaVA-NeXT, Gemma 3 and InternVL models of the real transformers classes, for tests.

Each has a one-layer vision tower of width 32 over 56-pixel images (14-pixel patches), the Qwen2 text stack of
tiny.py, the Qwen2 tokenizer with the family's special tokens added (`<image>`; Gemma's `<bos>`, turn and image
tokens; InternVL's `<img>`, `</img>`, `<IMG_CONTEXT>`), the family's real image processor (PIL backend, so no
torchvision is needed) sized for 56-pixel tiles, the processor's settings and a chat template. The folder loads
with plain `AutoModelForImageTextToText`, `AutoImageProcessor`, `AutoTokenizer` and `AutoProcessor` (InternVL's
processor also builds a video processor, which needs torchvision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.models.tiny import media_text_config, token_ids
from tuneforge.models.tiny_vlm import _add_keys, chat_template
from tuneforge.models.tokenizer import tokenizer_dir

TILE = 56  # image side the vision tower reads: 4x4 patches of 14 pixels
PATCH = 14
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
GRID_PINPOINTS = [[TILE, 2 * TILE], [2 * TILE, TILE], [2 * TILE, 2 * TILE], [3 * TILE, TILE], [TILE, 3 * TILE]]


@dataclass(frozen=True)
class Family:
    """What one tiny family is made of: tokens added to the tokenizer, its processor class and settings, its
    chat template, and the token that stands for one image feature."""

    model_type: str
    image_token: str
    tokens: dict[str, str]  # tokenizer attribute -> special token (transformers' `extra_special_tokens`)
    processor: str
    processor_kwargs: dict[str, Any]
    template: str
    extra_tokens: tuple[str, ...] = field(default=())  # further special tokens (Gemma's turn markers)


FAMILIES: dict[str, Family] = {
    "llava": Family(
        "llava",
        "<image>",
        {"image_token": "<image>"},
        "LlavaProcessor",
        {"patch_size": PATCH, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1},
        "llava.jinja",
    ),
    "llava_next": Family(
        "llava_next",
        "<image>",
        {"image_token": "<image>"},
        "LlavaNextProcessor",
        {"patch_size": PATCH, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1},
        "llava.jinja",
    ),
    "gemma3_vl": Family(  # `gemma3` is tiny.py's text-only Gemma 3
        "gemma3",
        "<image_soft_token>",
        {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
        "Gemma3Processor",
        {"image_seq_length": 4},
        "gemma3.jinja",
        ("<bos>", "<start_of_turn>", "<end_of_turn>"),
    ),
    "intern_vl": Family(
        "internvl",
        "<IMG_CONTEXT>",
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
        "InternVLProcessor",
        {"image_seq_length": 4},
        "intern_vl.jinja",
    ),
}


def tokenizer(arch: str) -> Any:
    """The Qwen2 tokenizer with the family's special tokens (and Gemma's `<bos>` as bos)."""
    from transformers import AutoTokenizer

    family = FAMILIES[arch]
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir("qwen2")), extra_special_tokens=family.tokens)
    if family.extra_tokens:
        tok.add_special_tokens({"bos_token": family.extra_tokens[0]})
        tok.add_tokens(list(family.extra_tokens[1:]), special_tokens=True)
    return tok


def _text_config(arch: str, hidden: int, layers: int) -> dict[str, Any]:
    # these families keep the text config class's default rotary settings and bos id, and set the pad id
    pad = token_ids("qwen2")["pad"]
    text = media_text_config(layers, hidden, rope_parameters=None, bos_token_id=None, pad_token_id=pad)
    if arch == "gemma3_vl":  # an explicit head size and alternating sliding-window layers, as Gemma 3
        text |= {"model_type": "gemma3_text", "head_dim": hidden // 4, "query_pre_attn_scalar": hidden // 4}
        kinds = ["sliding_attention", "full_attention"]
        text |= {"sliding_window": 64, "layer_types": [kinds[index % 2] for index in range(layers)]}
    return text


def _vision_config(arch: str) -> dict[str, Any]:
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1}
    sizes |= {"image_size": TILE, "patch_size": PATCH}
    kind = {"gemma3_vl": "siglip_vision_model", "intern_vl": "internvl_vision"}.get(arch, "clip_vision_model")
    return {"model_type": kind, **sizes}


def build_config(arch: str, tok: Any, *, layers: int = 2, hidden: int = 64) -> Any:
    """Config of a tiny `arch` model whose image token ids are those of `tok`."""
    from transformers import AutoConfig

    family = FAMILIES[arch]
    image_id = tok.convert_tokens_to_ids(family.image_token)
    parts = {"text_config": _text_config(arch, hidden, layers), "vision_config": _vision_config(arch)}
    if arch == "gemma3_vl":
        boi, eoi = tok.convert_tokens_to_ids(["<start_of_image>", "<end_of_image>"])
        extra = {"mm_tokens_per_image": 4, "boi_token_index": boi, "eoi_token_index": eoi}
        return AutoConfig.for_model("gemma3", **parts, image_token_index=image_id, **extra)
    if arch == "intern_vl":
        return AutoConfig.for_model("internvl", **parts, image_token_id=image_id, image_seq_length=4)
    # the tower has one layer: its output is the feature layer (real checkpoints read the second to last of 24)
    extra = {"image_grid_pinpoints": GRID_PINPOINTS} if arch == "llava_next" else {"image_seq_length": 16}
    extra |= {"vision_feature_layer": -1, "tie_word_embeddings": True}
    return AutoConfig.for_model(arch, **parts, image_token_index=image_id, **extra)


def image_processor(arch: str) -> Any:
    """The family's real image processor (PIL backend) for 56-pixel tiles."""
    square = {"height": TILE, "width": TILE}
    if arch == "llava":
        from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

        return LlavaImageProcessorPil(size={"shortest_edge": TILE}, crop_size=square)
    if arch == "llava_next":
        from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

        return LlavaNextImageProcessorPil(
            size={"shortest_edge": TILE}, crop_size=square, image_grid_pinpoints=GRID_PINPOINTS
        )
    if arch == "gemma3_vl":
        from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

        return Gemma3ImageProcessorPil(size=square, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    return GotOcr2ImageProcessorPil(size=square, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, max_patches=12)


def save_processor(arch: str, out: Path, tok: Any) -> None:
    """Write the image processor, tokenizer, processor settings and chat template (the files
    `Processor.save_pretrained` writes, written one by one because InternVL's processor object needs torchvision)."""
    family = FAMILIES[arch]
    template = chat_template(family.template)
    image_processor(arch).save_pretrained(str(out))
    _add_keys(out / "preprocessor_config.json", {"processor_class": family.processor})
    tok.chat_template = template
    tok.save_pretrained(str(out))
    settings = {"processor_class": family.processor, **family.processor_kwargs}
    (out / "processor_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")


def _generation_config(tok: Any, arch: str) -> Any:
    from transformers import GenerationConfig

    ids = token_ids("qwen2")
    stop = tok.convert_tokens_to_ids("<end_of_turn>") if arch == "gemma3_vl" else ids["eos"][0]
    return GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=[stop, *ids["eos"]], pad_token_id=ids["pad"])


def make_tiny_family(arch: str, out: Path, *, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny random `arch` model with processor, chat template and generation config into `out`."""
    import torch
    from transformers import AutoModelForImageTextToText

    tok = tokenizer(arch)
    config = build_config(arch, tok, layers=layers, hidden=hidden)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
        if arch == "gemma3_vl":  # transformers leaves the projection at zeros: images would not reach the model
            torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.02)
    model.generation_config = _generation_config(tok, arch)
    model.save_pretrained(str(out))
    save_processor(arch, out, tok)
    return out
