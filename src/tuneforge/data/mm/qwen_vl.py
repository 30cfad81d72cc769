"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: each image becomes `<|vision_start|>`, one image token per merged 2x2
patch block (the count from the model's image processor for the image's size after LLaMA-Factory's
`image_max_pixels` / `image_min_pixels` rescaling), `<|vision_end|>`."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from tuneforge.data.convert import RowError
from tuneforge.data.mm.base import MediaSettings, load_processor_part

QWEN_MIN_SIDE = 28  # each side must hold one merged 2x2 block of 14-pixel patches


class QwenVLPlugin:
    """Images for the Qwen-VL family (`mm_plugin: qwen2_vl` / `qwen3_vl`)."""

    kinds = ("images",)

    def __init__(self, spec: Any, image_processor: Any, settings: MediaSettings) -> None:
        self.name = spec.mm_plugin
        self.image_token = spec.image_token
        self.vision_start, self.vision_end = spec.vision_start, spec.vision_end
        self.image_processor = image_processor
        self.settings = settings
        self.image_token_id: int | None = None

    @classmethod
    def build(cls, spec: Any, model_path: str, settings: MediaSettings) -> QwenVLPlugin:
        """The plugin with the image processor saved beside the model."""
        return cls(spec, load_processor_part(model_path, "AutoImageProcessor", "image processor"), settings)

    def fingerprint(self) -> dict[str, Any]:
        """The plugin, its tokens, the image limits and the image processor's settings."""
        tokens = [self.name, self.image_token, self.vision_start, self.vision_end]
        limits = {k: v for k, v in asdict(self.settings).items() if k.startswith("image_")}
        return {"plugin": tokens, "limits": limits, "processor": self.image_processor.to_dict()}

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """An image's size after `image_max_pixels` / `image_min_pixels` rescaling and the Qwen2-VL minimum side
        and aspect-ratio limits (the processor then fits it to its patch grid)."""
        s = self.settings
        if width * height > s.image_max_pixels:
            width, height = _scaled(width, height, math.sqrt(s.image_max_pixels / (width * height)))
        if width * height < s.image_min_pixels:
            width, height = _scaled(width, height, math.sqrt(s.image_min_pixels / (width * height)))
        if min(width, height) < QWEN_MIN_SIDE:
            width, height = max(width, QWEN_MIN_SIDE), max(height, QWEN_MIN_SIDE)
        if width / height > 200:
            width = height * 180
        if height / width > 200:
            height = width * 180
        return width, height

    def image_tokens(self, width: int, height: int) -> int:
        """How many image tokens the model reads for an image of this (original) size."""
        width, height = self.target_size(width, height)
        patches = self.image_processor.get_number_of_image_patches(height, width, {})
        return patches // self.image_processor.merge_size**2

    def expand(self, kind: str, path: str) -> str:
        """The model's image tokens between its vision markers, for the image at `path`."""
        return self.vision_start + self.image_token * self.image_tokens(*image_size(path)) + self.vision_end

    def load_image(self, path: str) -> Any:
        """An image file as an RGB PIL image, rescaled as `target_size` says."""
        from PIL import Image

        with Image.open(path) as opened:
            image = opened.convert("RGB")
        size = self.target_size(*image.size)
        return image if size == image.size else image.resize(size)

    def model_inputs(self, media: dict[str, list[str]]) -> dict[str, Any]:
        """`pixel_values` and `image_grid_thw` for the batch's images, in order."""
        paths = media.get("images") or []
        if not paths:
            return {}
        batch = self.image_processor(images=[self.load_image(p) for p in paths], return_tensors="pt")
        return {"pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"]}

    def token_inputs(self, input_ids: Any) -> tuple[Any, dict[str, Any]]:
        """The image-token mask, and `mm_token_type_ids` (1 at image tokens) that Qwen-VL's rope index reads."""
        is_image = input_ids == self.image_token_id
        return is_image, {"mm_token_type_ids": is_image.int()}

    def bind(self, tokenizer: Any) -> None:
        """Learn the image token's id from the run's tokenizer."""
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)


def _scaled(width: int, height: int, factor: float) -> tuple[int, int]:
    return int(width * factor), int(height * factor)


def image_size(path: str) -> tuple[int, int]:
    """An image file's (width, height), or a row error saying it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as err:
        raise RowError(f"image {path!r} cannot be read ({err})") from err
