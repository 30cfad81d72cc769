"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: each image becomes `<|vision_start|>`, one image token per merged 2x2
patch block (the count from the model's image processor for the image's size after LLaMA-Factory's
`image_max_pixels` / `image_min_pixels` rescaling), `<|vision_end|>`.

Each video (Qwen2-VL / Qwen2.5-VL) becomes `<|vision_start|>`, one video token per merged 2x2 block of each
temporal patch, `<|vision_end|>`: its frames are sampled by `video_fps` / `video_maxlen` (an odd count gets its
last frame twice), rescaled by `video_max_pixels` / `video_min_pixels` as images are, and given to the model's video
processor (`qwen_video.py`). Qwen2.5-VL also reads `second_per_grid_ts`, the seconds one temporal patch spans
(the Qwen2.5-Omni thinker the same as `video_second_per_grid`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tuneforge.data.convert import RowError
from tuneforge.data.mm.base import MediaSettings, load_processor_part
from tuneforge.data.mm.qwen_video import VideoSettings, load_video_processor, video_settings
from tuneforge.data.mm.video import read_clip

QWEN_MIN_SIDE = 28  # each side must hold one merged 2x2 block of 14-pixel patches
TOKEN_TYPES = {"images": 1, "videos": 2}  # `mm_token_type_ids` values Qwen-VL's rope index reads
# the input naming the seconds one temporal video patch spans, by model type (Qwen2-VL reads none)
SECONDS_INPUTS = {"qwen2_5_vl": "second_per_grid_ts", "qwen2_5_omni_thinker": "video_second_per_grid"}


class QwenVLPlugin:
    """Images and videos for Qwen2-VL / Qwen2.5-VL (`mm_plugin: qwen2_vl`); images for Qwen3-VL through
    `Qwen3VLPlugin`."""

    kinds: tuple[str, ...] = ("images", "videos")

    def __init__(
        self, spec: Any, image_processor: Any, settings: MediaSettings, video: QwenVideo | None = None
    ) -> None:
        self.name = spec.mm_plugin
        self.tokens = {"images": spec.image_token, "videos": spec.video_token}
        self.image_token = spec.image_token
        self.vision_start, self.vision_end = spec.vision_start, spec.vision_end
        self.image_processor = image_processor
        self.settings = settings
        self.video = video
        self.kinds = type(self).kinds if video else ("images",)
        self.token_ids: dict[str, int] = {}

    @classmethod
    def build(cls, spec: Any, model_path: str, settings: MediaSettings) -> QwenVLPlugin:
        """The plugin with the image processor (and video settings) saved beside the model."""
        image_processor = load_processor_part(model_path, "AutoImageProcessor", "image processor")
        video = QwenVideo.load(model_path, image_processor) if "videos" in cls.kinds else None
        return cls(spec, image_processor, settings, video)

    def fingerprint(self) -> dict[str, Any]:
        """The plugin, its tokens, the media limits and the image and video processors' settings."""
        tokens = [self.name, self.image_token, self.tokens["videos"], self.vision_start, self.vision_end]
        limits = {k: v for k, v in asdict(self.settings).items() if k.startswith(("image_", "video_"))}
        video = asdict(self.video.settings) if self.video else None
        return {"plugin": tokens, "limits": limits, "processor": self.image_processor.to_dict(), "video": video}

    def target_size(self, width: int, height: int, limits: tuple[int, int] | None = None) -> tuple[int, int]:
        """An image's (or with the video `limits` a frame's) size after `*_max_pixels` / `*_min_pixels`
        rescaling and the Qwen2-VL minimum side and aspect-ratio limits (the processor then fits it to its
        patch grid)."""
        max_pixels, min_pixels = limits or (self.settings.image_max_pixels, self.settings.image_min_pixels)
        if width * height > max_pixels:
            width, height = _scaled(width, height, math.sqrt(max_pixels / (width * height)))
        if width * height < min_pixels:
            width, height = _scaled(width, height, math.sqrt(min_pixels / (width * height)))
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
        """The model's image or video tokens between its vision markers, for the file (or frame list) `path`."""
        if kind == "videos" and self.video:
            frames, _ = self.load_clip(path)
            count = self.video.tokens(len(frames), *frames[0].size)
        else:
            count = self.image_tokens(*image_size(path))
        return self.vision_start + self.tokens[kind] * count + self.vision_end

    def load_image(self, path: str, limits: tuple[int, int] | None = None) -> Any:
        """An image file (or PIL image) as an RGB PIL image, rescaled as `target_size` says."""
        from PIL import Image

        if isinstance(path, Image.Image):
            image = path
        else:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        size = self.target_size(*image.size, limits)
        return image if size == image.size else image.resize(size)

    def load_clip(self, value: str) -> tuple[list[Any], Any]:
        """A video's sampled frames (an even count), rescaled by the video limits, and its `Clip`."""
        s = self.settings
        clip = read_clip(value, s.video_fps, s.video_maxlen)
        frames = clip.frames + clip.frames[-1:] * (len(clip.frames) % 2)
        return [self.load_image(f, (s.video_max_pixels, s.video_min_pixels)) for f in frames], clip

    def model_inputs(self, media: dict[str, list[str]]) -> dict[str, Any]:
        """`pixel_values` / `image_grid_thw` for the batch's images and `pixel_values_videos` / `video_grid_thw`
        (and for Qwen2.5-VL `second_per_grid_ts`) for its videos, in order."""
        out: dict[str, Any] = {}
        if paths := media.get("images") or []:
            batch = self.image_processor(images=[self.load_image(p) for p in paths], return_tensors="pt")
            out |= {"pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"]}
        if (videos := media.get("videos") or []) and self.video:
            out |= self.video.inputs([self.load_clip(v) for v in videos])
        return out

    def token_inputs(self, input_ids: Any) -> tuple[Any, dict[str, Any]]:
        """The media-token mask, and `mm_token_type_ids` (1 at image tokens, 2 at video tokens) that Qwen-VL's
        rope index reads."""
        types = input_ids.new_zeros(input_ids.shape, dtype=input_ids.dtype)
        for kind, token_id in self.token_ids.items():
            types = types.masked_fill(input_ids == token_id, TOKEN_TYPES[kind])
        return types > 0, {"mm_token_type_ids": types.int()}

    @property
    def image_token_id(self) -> int | None:
        """The image token's id (after `bind`)."""
        return self.token_ids.get("images")

    def bind(self, tokenizer: Any) -> None:
        """Learn the media tokens' ids from the run's tokenizer."""
        self.token_ids = {kind: tokenizer.convert_tokens_to_ids(self.tokens[kind]) for kind in self.kinds}


class Qwen3VLPlugin(QwenVLPlugin):
    """Qwen3-VL (`mm_plugin: qwen3_vl`): images as Qwen2-VL places them; its videos (a timestamp and vision markers
    around each frame pair) are not built yet, so rows with videos are refused."""

    kinds = ("images",)


class QwenVideo:
    """A Qwen-VL model's video side: its video processor settings, the processor, and the name of the input
    giving each video's seconds per temporal patch (`SECONDS_INPUTS`; None where the model reads none)."""

    def __init__(self, settings: VideoSettings, processor: Any, seconds_input: str | None) -> None:
        self.settings, self.processor, self.seconds_input = settings, processor, seconds_input

    @classmethod
    def load(cls, model_path: str, image_processor: Any) -> QwenVideo:
        """The video side of the model saved at `model_path`."""
        settings = video_settings(model_path, image_processor)
        config = Path(model_path) / "config.json"
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
        return cls(settings, load_video_processor(model_path, settings), SECONDS_INPUTS.get(model_type))

    def tokens(self, frames: int, width: int, height: int) -> int:
        """How many video tokens a clip of `frames` frames of this (rescaled) size becomes."""
        t, h, w = self.settings.grid(frames, width, height)
        return t * h * w // self.settings.merge_size**2

    def inputs(self, clips: list[tuple[list[Any], Any]]) -> dict[str, Any]:
        """The model's video tensors for clips as `QwenVLPlugin.load_clip` gives them."""
        import torch

        out = self.processor([frames for frames, _ in clips])
        if self.seconds_input:
            seconds = [self.settings.temporal_patch_size / clip.sampled_fps for _, clip in clips]
            out[self.seconds_input] = torch.tensor(seconds)
        return out


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
