"""Gemma 3: each image becomes `\\n\\n<start_of_image>` + the processor's `image_seq_length` soft tokens +
`<end_of_image>\\n\\n`; `token_type_ids` mark the soft tokens (Gemma 3 attends bidirectionally within an image).

With `image_do_pan_and_scan`, a wide or tall image is also cut into crops (LLaMA-Factory's crop settings: at
least 256 pixels a side, at most 4 crops, from an aspect ratio of 1.2) and the mark becomes
"Here is the original image <image> and here are some crops to help you see better <crop> <crop> ...", as
LLaMA-Factory writes it (also when the image needs no crops).
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.mm.base import MediaSettings
from tuneforge.data.mm.images import ImagePlugin, read_processor, settings_of

PAN_AND_SCAN = {  # LLaMA-Factory's crop settings
    "do_pan_and_scan": True,
    "pan_and_scan_min_crop_size": 256,
    "pan_and_scan_max_num_crops": 4,
    "pan_and_scan_min_ratio_to_activate": 1.2,
}


class Gemma3Images:
    """Gemma 3 images (`mm_plugin: gemma3`)."""

    def __init__(self, image_processor: Any, image_seq: str, pan_and_scan: bool) -> None:
        self.image_processor = image_processor
        self.image_seq = image_seq
        self.options = PAN_AND_SCAN if pan_and_scan else {}

    def text(self, image: Any) -> str:
        """One image sequence, or with pan and scan the original and its crops in LLaMA-Factory's sentence."""
        if not self.options:
            return self.image_seq
        crops = int(self.image_processor(images=[image], return_tensors="pt", **self.options)["num_crops"][0])
        lead = f"Here is the original image {self.image_seq} and here are some crops to help you see better "
        return lead + " ".join([self.image_seq] * crops)

    def tensors(self, images: list[Any]) -> dict[str, Any]:
        """`pixel_values` of the images (with pan and scan: each image followed by its crops)."""
        batch = self.image_processor(images=images, return_tensors="pt", **self.options)
        return {"pixel_values": batch["pixel_values"]}

    def per_token(self, is_image: Any) -> dict[str, Any]:
        """`token_type_ids`: 1 at image soft tokens."""
        return {"token_type_ids": is_image.long()}

    def settings(self) -> dict[str, Any]:
        """The image processor's settings, the image sequence and the crop settings."""
        return settings_of(self.image_processor, image_seq=self.image_seq, pan_and_scan=self.options)


def build_gemma3(spec: Any, model_path: str, settings: MediaSettings) -> ImagePlugin:
    """The Gemma 3 plugin with the processor saved beside the model (its `image_seq_length`)."""
    processor = read_processor(model_path)
    image_seq = f"{spec.vision_start}{spec.image_token * processor.image_seq_length}{spec.vision_end}"
    family = Gemma3Images(processor.image_processor, image_seq, settings.image_do_pan_and_scan)
    return ImagePlugin(spec, family, settings)
