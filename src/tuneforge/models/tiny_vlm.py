"""Random-initialised vision-language models of real architectures (Qwen2-VL, Qwen2.5-VL, Qwen3-VL), for tests.

`make_tiny_vlm("qwen2_vl", out)` writes a ~10M-parameter model (most of it the 151,936-word embedding; a
one-block vision tower of width 32) with the Qwen2 tokenizer tuneforge builds offline, the model's real image
processor (constructed in code: the real patch and merge sizes, a small `max_pixels` so images stay a few
tokens) and its video processor config, a chat template that places images and videos as the real checkpoints
do, and a generation config. The folder loads with plain `AutoModelForImageTextToText`, `AutoImageProcessor`,
`AutoTokenizer` and (with torchvision, which transformers needs for any Qwen-VL processor) `AutoProcessor`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tuneforge.models.tiny import VLM_ARCHES, _generation_config, media_text_config, mrope_section
from tuneforge.models.tokenizer import special_token_ids, tokenizer_dir

__all__ = ["VLM_ARCHES", "build_vlm_config", "describe_vlm", "make_tiny_vlm", "save_processor"]

PATCH_SIZE = 14  # the real Qwen2-VL / Qwen2.5-VL patch and merge sizes
MERGE_SIZE = 2
TINY_MIN_PIXELS = 28 * 28  # one merged token at the smallest
TINY_MAX_PIXELS = 112 * 112  # at most 16 merged tokens per image: large demo images stay cheap
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class VlmSpec:
    """What differs between the Qwen-VL generations: tokenizer family, patch size, processor names, template."""

    family: str
    patch_size: int
    processor: str
    video_processor: str
    template: str
    mean: tuple[float, ...] = tuple(CLIP_MEAN)
    std: tuple[float, ...] = tuple(CLIP_STD)


SPECS = {
    "qwen2_vl": VlmSpec("qwen2", PATCH_SIZE, "Qwen2VLProcessor", "Qwen2VLVideoProcessor", "qwen2-vl.jinja"),
    "qwen2_5_vl": VlmSpec("qwen2", PATCH_SIZE, "Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor", "qwen2-vl.jinja"),
    "qwen3_vl": VlmSpec(
        "qwen3", 16, "Qwen3VLProcessor", "Qwen3VLVideoProcessor", "qwen3-vl.jinja", (0.5,) * 3, (0.5,) * 3
    ),
}


def build_vlm_config(arch: str, *, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2) -> Any:
    """Config of a tiny `arch` model: the Qwen2 text stack of tiny.py plus a one-block vision tower of width 32."""
    from transformers import AutoConfig

    spec = SPECS[arch]
    special = special_token_ids(spec.family)
    text = media_text_config(layers, hidden, heads=heads, kv_heads=kv_heads, family=spec.family, model_type=None)
    text["rope_parameters"]["mrope_section"] = mrope_section(hidden, heads)
    if arch == "qwen3_vl":  # an explicit head size and interleaved multimodal rotary frequencies
        text["head_dim"] = hidden // heads
        half = hidden // heads // 2  # rotary frequencies per head
        text["rope_parameters"] |= {"mrope_interleaved": True, "mrope_section": [half // 2, half // 4, half // 4]}
    vision = {"depth": 1, "num_heads": 2, "patch_size": spec.patch_size, "spatial_merge_size": MERGE_SIZE}
    vision |= _vision_sizes(arch, hidden)
    return AutoConfig.for_model(
        arch,
        text_config=text,
        vision_config=vision,
        image_token_id=special["<|image_pad|>"],
        video_token_id=special["<|video_pad|>"],
        vision_start_token_id=special["<|vision_start|>"],
        vision_end_token_id=special["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _vision_sizes(arch: str, hidden: int) -> dict[str, Any]:
    if arch == "qwen3_vl":  # learned position embeddings (an 8x8 grid) and one deepstack feature level
        return {
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": hidden,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        }
    if arch == "qwen2_5_vl":  # window attention, a gated MLP and an `out_hidden_size` into the text model
        return {
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": hidden,
            "window_size": 56,
            "fullatt_block_indexes": [0],
        }
    return {"embed_dim": 32, "hidden_size": hidden, "mlp_ratio": 2}


def image_processor(arch: str = "qwen2_vl") -> Any:
    """The real Qwen-VL image processor (PIL backend) with the real patch and merge sizes and tiny pixel limits."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    spec = SPECS[arch]
    return Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        merge_size=MERGE_SIZE,
        min_pixels=TINY_MIN_PIXELS,
        max_pixels=TINY_MAX_PIXELS,
        image_mean=list(spec.mean),
        image_std=list(spec.std),
    )


def save_processor(arch: str, out: Path) -> None:
    """Write the processor's files: image and video processor configs naming the processor class, the tokenizer
    (with the chat template) and `chat_template.jinja`.

    Written file by file because transformers 5 builds a Qwen-VL processor object only with torchvision installed
    (its video processor needs it); the folder is the one `Processor.save_pretrained` writes, so
    `AutoProcessor.from_pretrained` loads it wherever torchvision is present.
    """
    from transformers import AutoTokenizer

    spec = SPECS[arch]
    image_processor(arch).save_pretrained(str(out))
    _add_keys(out / "preprocessor_config.json", {"processor_class": spec.processor})
    video = {**_VIDEO_CONFIG, "processor_class": spec.processor, "video_processor_type": spec.video_processor}
    video |= {"patch_size": spec.patch_size, "image_mean": list(spec.mean), "image_std": list(spec.std)}
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n", encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir(spec.family)))
    template = chat_template(spec.template)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")


# Qwen2VLVideoProcessor's settings (its defaults, with this module's patch/merge sizes and pixel limits)
_VIDEO_CONFIG = {
    "video_processor_type": "Qwen2VLVideoProcessor",
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "do_sample_frames": False,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "merge_size": MERGE_SIZE,
    "patch_size": PATCH_SIZE,
    "temporal_patch_size": 2,
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"longest_edge": TINY_MAX_PIXELS, "shortest_edge": TINY_MIN_PIXELS},
}


def _add_keys(path: Path, keys: dict[str, Any]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**data, **keys}, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def chat_template(name: str) -> str:
    """A Qwen-VL chat template (images and videos as content parts) from the package data."""
    return resources.files("tuneforge.models").joinpath("chat_templates", name).read_text(encoding="utf-8")


def make_tiny_vlm(arch: str, out: Path, *, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny random `arch` model with processor, chat template and generation config into `out`."""
    import torch
    from transformers import AutoModelForImageTextToText

    if arch not in SPECS:  # LLaVA, LLaVA-NeXT, Gemma 3, InternVL
        from tuneforge.models.tiny_vlm_families import make_tiny_family

        return make_tiny_family(arch, out, layers=layers, hidden=hidden, seed=seed)
    config = build_vlm_config(arch, layers=layers, hidden=hidden)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
    model.generation_config = _generation_config(SPECS[arch].family)
    model.save_pretrained(str(out))
    save_processor(arch, out)
    return out


def describe_vlm(path: Path) -> str:
    """One line for `tuneforge make-tiny`: the model type, sizes and parameter count of the model at `path`."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(str(path))
    with torch.device("meta"):
        count = sum(p.numel() for p in AutoModelForImageTextToText.from_config(config).parameters())
    text = config.text_config
    return (
        f"wrote {config.model_type} model ({text.num_hidden_layers} layers, hidden {text.hidden_size}, "
        f"vision depth {getattr(config.vision_config, 'depth', None) or config.vision_config.num_hidden_layers}, "
        f"{count:,} parameters) to {path}"
    )
