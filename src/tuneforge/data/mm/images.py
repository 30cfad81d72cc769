"""What image plugins share: reading an image as LLaMA-Factory does, binding the image token, the label mask.

`ImagePlugin` keeps the `MediaPlugin` contract for one model family's `ImageFamily`, which says only what
differs: the text one image becomes, the tensors a batch of images becomes, and per-token inputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Protocol

from tuneforge.data.convert import RowError
from tuneforge.data.mm.base import MediaSettings


class ImageFamily(Protocol):
    """How one model family turns images into text and tensors (images are LF-rescaled RGB PIL images)."""

    def text(self, image: Any) -> str:
        """The text that replaces one `<image>` mark: the model's image tokens for this image."""
        ...

    def tensors(self, images: list[Any]) -> dict[str, Any]:
        """The model's image inputs for a batch's images, in order."""
        ...

    def per_token(self, is_image: Any) -> dict[str, Any]:
        """Per-token model inputs from the image-token mask (e.g. Gemma 3's `token_type_ids`)."""
        ...

    def settings(self) -> dict[str, Any]:
        """What decides token counts and tensors (processor settings), for the data cache key."""
        ...


class ImagePlugin:
    """Images for one family: `<image>` marks become `family.text(image)`; the family's image token is masked."""

    kinds = ("images",)

    def __init__(self, spec: Any, family: ImageFamily, settings: MediaSettings) -> None:
        self.name = spec.mm_plugin
        self.image_token = spec.image_token
        self.family = family
        self.settings = settings
        self.image_token_id: int | None = None

    def fingerprint(self) -> dict[str, Any]:
        """The plugin, its image token, the image limits and the family's processor settings."""
        limits = {k: v for k, v in asdict(self.settings).items() if k.startswith("image_") or k == "crop_to_patches"}
        return {"plugin": [self.name, self.image_token], "limits": limits, "processor": self.family.settings()}

    def expand(self, kind: str, path: str) -> str:
        """The family's image text for the image at `path`."""
        return self.family.text(load_image(path, self.settings))

    def model_inputs(self, media: dict[str, list[str]]) -> dict[str, Any]:
        """The family's tensors for the batch's images (nothing for a batch without images)."""
        paths = media.get("images") or []
        return self.family.tensors([load_image(p, self.settings) for p in paths]) if paths else {}

    def bind(self, tokenizer: Any) -> None:
        """Learn the image token's id from the run's tokenizer."""
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    def token_inputs(self, input_ids: Any) -> tuple[Any, dict[str, Any]]:
        """The image-token mask and the family's per-token inputs."""
        is_image = input_ids == self.image_token_id
        return is_image, self.family.per_token(is_image)


def load_image(path: str, settings: MediaSettings) -> Any:
    """An image file as LLaMA-Factory feeds it to the processor: scaled down to `image_max_pixels`, up to
    `image_min_pixels` (aspect kept, sides truncated to whole pixels), as RGB; a row error if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened.copy()
    except (UnidentifiedImageError, OSError) as err:
        raise RowError(f"image {path!r} cannot be read ({err})") from err
    for limit, needed in ((settings.image_max_pixels, "over"), (settings.image_min_pixels, "under")):
        area = image.width * image.height
        if (area > limit) if needed == "over" else (area < limit):
            factor = math.sqrt(limit / area)
            image = image.resize((int(image.width * factor), int(image.height * factor)))
    return image if image.mode == "RGB" else image.convert("RGB")


def read_processor(model_path: str) -> Any:
    """The processor saved with the model (`AutoProcessor`), or a clear error naming the model folder."""
    from tuneforge.data.mm.base import load_processor_part

    return load_processor_part(model_path, "AutoProcessor", "processor")


def settings_of(image_processor: Any, **extra: Any) -> dict[str, Any]:
    """An image processor's settings plus `extra` (for fingerprints)."""
    return {**image_processor.to_dict(), **extra}
