"""Qwen2-VL / Qwen2.5-VL video tensors: the model's video processor where torchvision imports, else the same
tensors built here from its saved settings (`video_preprocessor_config.json`).

transformers' `Qwen2VLVideoProcessor` needs torchvision. Without it, `TorchVideoProcessor` does what that processor
does with torch alone: each clip's frames (all one size) are resized to the processor's patch grid (`smart_resize`
between its `size` limits) with torch's native antialiased bicubic kernel on uint8 (what torchvision calls on CPU),
rescaled and normalized, padded to a multiple of `temporal_patch_size` frames by repeating the last one, and cut
into (temporal x patch x patch) blocks ordered by merged 2x2 group. tests/test_video.py checks it against the real
processor's output (tests/fixtures/qwen2_vl_video_processor.json, made by scripts/lf_fixtures/video_processor.py).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VIDEO_CONFIG = "video_preprocessor_config.json"
_SETTING_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std", "rescale_factor")


@dataclass(frozen=True)
class VideoSettings:
    """The video processor's settings that decide its tensors."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    image_mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
    rescale_factor: float = 1 / 255

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> VideoSettings:
        """Settings from a processor config (the video processor's, else the image processor's)."""
        values: dict[str, Any] = {k: config[k] for k in _SETTING_KEYS if config.get(k) is not None}
        for key in ("image_mean", "image_std"):
            if key in values:
                values[key] = tuple(values[key])
        size = config.get("size") or {}
        values["min_pixels"] = size.get("shortest_edge", config.get("min_pixels", cls.min_pixels))
        values["max_pixels"] = size.get("longest_edge", config.get("max_pixels", cls.max_pixels))
        return cls(**values)

    def grid(self, frames: int, width: int, height: int) -> tuple[int, int, int]:
        """The (time, height, width) patch grid of a clip of `frames` frames of this size."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        factor = self.patch_size * self.merge_size
        new_h, new_w = smart_resize(height, width, factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return -(-frames // self.temporal_patch_size), new_h // self.patch_size, new_w // self.patch_size


def video_settings(model_path: str, image_processor: Any) -> VideoSettings:
    """The video processor's settings saved with the model (its own file, or nested in `processor_config.json`;
    the image processor's where there is no video config)."""
    path = Path(model_path) / VIDEO_CONFIG
    if path.is_file():
        return VideoSettings.from_dict(json.loads(path.read_text(encoding="utf-8")))
    nested = Path(model_path) / "processor_config.json"  # Qwen2.5-Omni nests its processors' settings here
    if nested.is_file() and (config := json.loads(nested.read_text(encoding="utf-8")).get("video_processor")):
        return VideoSettings.from_dict(config)
    return VideoSettings.from_dict(image_processor.to_dict())


class TorchVideoProcessor:
    """`Qwen2VLVideoProcessor`'s `pixel_values_videos` / `video_grid_thw` without torchvision."""

    def __init__(self, settings: VideoSettings) -> None:
        self.settings = settings

    def __call__(self, videos: list[list[Any]]) -> dict[str, Any]:
        """The tensors for clips given as lists of same-size RGB PIL frames."""
        import torch

        patches, grids = [], []
        for frames in videos:
            flat, grid = self.patches(frames)
            patches.append(flat)
            grids.append(grid)
        return {"pixel_values_videos": torch.cat(patches), "video_grid_thw": torch.tensor(grids)}

    def patches(self, frames: list[Any]) -> tuple[Any, list[int]]:
        """One clip's flattened patches and its (t, h, w) grid."""
        import numpy as np
        import torch

        s = self.settings
        video = torch.from_numpy(np.stack([np.asarray(f, dtype=np.uint8) for f in frames])).permute(0, 3, 1, 2)
        t, h, w = s.grid(len(frames), video.shape[-1], video.shape[-2])
        video = _resize(video.contiguous(), h * s.patch_size, w * s.patch_size)
        mean = torch.tensor(s.image_mean) * (1.0 / s.rescale_factor)
        std = torch.tensor(s.image_std) * (1.0 / s.rescale_factor)
        video = (video.to(torch.float32) - mean[:, None, None]) / std[:, None, None]
        if pad := -video.shape[0] % s.temporal_patch_size:
            video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)])
        m, p = s.merge_size, s.patch_size
        blocks = video.reshape(t, s.temporal_patch_size, 3, h // m, m, p, w // m, m, p)
        blocks = blocks.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return blocks.reshape(t * h * w, 3 * s.temporal_patch_size * p * p), [t, h, w]


def _resize(video: Any, height: int, width: int) -> Any:
    """torchvision's resize of a uint8 (T, C, H, W) tensor on the CPU: torch's native antialiased bicubic."""
    import torch

    if video.shape[-2:] == (height, width):
        return video
    return torch.nn.functional.interpolate(
        video, size=[height, width], mode="bicubic", align_corners=False, antialias=True
    )


def load_video_processor(model_path: str, settings: VideoSettings) -> Any:
    """A callable giving the video tensors of a list of clips: transformers' video processor of the model where
    torchvision imports, else `TorchVideoProcessor`."""
    if importlib.util.find_spec("torchvision") is None:
        return TorchVideoProcessor(settings)
    try:
        from transformers import AutoVideoProcessor

        processor = AutoVideoProcessor.from_pretrained(model_path)
    except (ImportError, OSError, ValueError, RuntimeError):
        return TorchVideoProcessor(settings)
    return lambda videos: dict(processor(videos=videos, return_tensors="pt"))
