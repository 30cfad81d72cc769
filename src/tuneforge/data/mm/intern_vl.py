"""InternVL: each image becomes `<img>` + `<IMG_CONTEXT>` × (the processor's `image_seq_length` per tile) +
`</img>`. Without `crop_to_patches` an image is one tile; with it, the image processor tiles it (1 to 12 tiles
of the model's side, as LLaMA-Factory asks, plus a thumbnail) and every tile adds `image_seq_length` tokens.

transformers builds InternVL's processor object only with torchvision (its video processor); the plugin reads the
image processor and `image_seq_length` from the saved files instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.data.mm.base import MediaSettings, load_processor_part
from tuneforge.data.mm.images import ImagePlugin, settings_of
from tuneforge.errors import DataError

CROPS = {"crop_to_patches": True, "min_patches": 1, "max_patches": 12}  # LLaMA-Factory's tiling


class InternVLImages:
    """InternVL images (`mm_plugin: intern_vl`)."""

    def __init__(self, image_processor: Any, seq_length: int, marks: tuple[str, str, str], crop: bool) -> None:
        self.image_processor = image_processor
        self.seq_length = seq_length
        self.start, self.token, self.end = marks
        self.options = CROPS if crop else {"crop_to_patches": False}

    def text(self, image: Any) -> str:
        """`<img>`, the context tokens of every tile, `</img>`."""
        tiles = int(self.image_processor(images=[image], return_tensors="pt", **self.options)["num_patches"][0])
        return self.start + self.token * (self.seq_length * tiles) + self.end

    def tensors(self, images: list[Any]) -> dict[str, Any]:
        """`pixel_values`: the tiles of all images, in order."""
        return {
            "pixel_values": self.image_processor(images=images, return_tensors="pt", **self.options)["pixel_values"]
        }

    def per_token(self, is_image: Any) -> dict[str, Any]:
        """InternVL takes no per-token inputs."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The image processor's settings, tokens per tile and tiling."""
        return settings_of(self.image_processor, seq_length=self.seq_length, tiling=self.options)


def image_seq_length(model_path: str) -> int:
    """`image_seq_length` from the saved processor settings (or the model config), or a clear error."""
    for name in ("processor_config.json", "config.json"):
        path = Path(model_path) / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("image_seq_length")
            if value:
                return int(value)
    raise DataError(f"No `image_seq_length` in {model_path}/processor_config.json or config.json (InternVL).")


def build_intern_vl(spec: Any, model_path: str, settings: MediaSettings) -> ImagePlugin:
    """The InternVL plugin with the image processor saved beside the model."""
    image_processor = load_processor_part(model_path, "AutoImageProcessor", "image processor")
    marks = (spec.vision_start, spec.image_token, spec.vision_end)
    family = InternVLImages(image_processor, image_seq_length(model_path), marks, settings.crop_to_patches)
    return ImagePlugin(spec, family, settings)
