"""LLaVA-1.5 and LLaVA-NeXT: each image becomes a run of `<image>` tokens, one per image feature.

LLaVA-1.5 reads one fixed-size crop: (crop side / patch size)² patch features, plus the processor's
`num_additional_image_tokens` (the CLS token), less one under the `default` feature strategy (which drops CLS).
LLaVA-NeXT ("anyres") adds the tiles of the best-fitting grid resolution for the image's size: the processor's
own feature count for the image as LLaMA-Factory rescales it (`image_max_pixels` / `image_min_pixels`).
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.mm.base import MediaSettings
from tuneforge.data.mm.images import ImagePlugin, read_processor, settings_of


class LlavaImages:
    """LLaVA-1.5 images (`mm_plugin: llava`): a fixed number of `<image>` tokens per image."""

    def __init__(self, processor: Any, image_token: str) -> None:
        self.processor = processor
        self.image_token = image_token

    def _dropped(self) -> int:
        return 1 if self.processor.vision_feature_select_strategy == "default" else 0

    def count(self, image: Any) -> int:
        """Image features of one image: patches of the processed image, plus CLS unless dropped."""
        height, width = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"].shape[-2:]
        patch = self.processor.patch_size
        return (height // patch) * (width // patch) + self.processor.num_additional_image_tokens - self._dropped()

    def text(self, image: Any) -> str:
        """The run of image tokens for one image."""
        return self.image_token * self.count(image)

    def tensors(self, images: list[Any]) -> dict[str, Any]:
        """`pixel_values` (and `image_sizes` for LLaVA-NeXT) for the batch's images."""
        return dict(self.processor.image_processor(images=images, return_tensors="pt"))

    def per_token(self, is_image: Any) -> dict[str, Any]:
        """LLaVA takes no per-token inputs."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The image processor's settings and the feature strategy."""
        p = self.processor
        extra = {"patch": p.patch_size, "cls": p.num_additional_image_tokens, "select": self._dropped()}
        return settings_of(p.image_processor, **extra)


class LlavaNextImages(LlavaImages):
    """LLaVA-NeXT images (`mm_plugin: llava_next`): the base crop plus anyres tiles, sized per image."""

    def count(self, image: Any) -> int:
        """The processor's feature count for this image size and its best grid resolution."""
        height, width = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"].shape[-2:]
        features = self.processor._get_number_of_features(image.height, image.width, height, width)
        return features - self._dropped()


def build_llava(spec: Any, model_path: str, settings: MediaSettings) -> ImagePlugin:
    """The LLaVA-1.5 plugin with the processor saved beside the model."""
    return ImagePlugin(spec, LlavaImages(read_processor(model_path), spec.image_token), settings)


def build_llava_next(spec: Any, model_path: str, settings: MediaSettings) -> ImagePlugin:
    """The LLaVA-NeXT plugin with the processor saved beside the model."""
    return ImagePlugin(spec, LlavaNextImages(read_processor(model_path), spec.image_token), settings)
