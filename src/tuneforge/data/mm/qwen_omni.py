"""Qwen2.5-Omni (the thinker): images and videos as Qwen2-VL places them, between `<|vision_bos|>` /
`<|vision_eos|>` with `<|IMAGE|>` / `<|VIDEO|>` tokens, and audios as Qwen2-Audio places them (`<|audio_bos|>`,
`<|AUDIO|>` tokens, `<|audio_eos|>`).

The plugin composes the two: the Qwen-VL plugin with the template's Omni tokens sizes images and videos (and gives
`pixel_values_videos`, `video_grid_thw` and the thinker's `video_second_per_grid`), the Qwen2-Audio plugin sizes
audios. The thinker computes its multimodal positions from `input_ids` itself, so no per-token inputs are added.
A video's own audio track (`use_audio_in_video`, interleaved with its frames) is not taken: that setting is refused.
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.mm.audio import require_audio
from tuneforge.data.mm.base import MediaSettings, load_processor_part
from tuneforge.data.mm.qwen2_audio import Qwen2AudioPlugin, processor_markers
from tuneforge.data.mm.qwen_vl import QwenVLPlugin
from tuneforge.errors import ConfigError


class QwenOmniPlugin:
    """Images, videos and audios for the Qwen2.5-Omni thinker (`mm_plugin: qwen2_omni`)."""

    kinds = ("images", "videos", "audios")

    def __init__(self, vision: QwenVLPlugin, audios: Qwen2AudioPlugin) -> None:
        self.parts = {"images": vision, "videos": vision, "audios": audios}

    @classmethod
    def build(cls, spec: Any, model_path: str, settings: MediaSettings) -> QwenOmniPlugin:
        """The plugin with the image and video processors and feature extractor saved beside the model."""
        from tuneforge.extras import require

        if settings.use_audio_in_video:
            raise ConfigError(
                "model.use_audio_in_video: the qwen2_omni plugin does not interleave a video's audio track with "
                "its frames yet; remove use_audio_in_video (give the audio as its own <audio> with the video)"
            )
        require("PIL", "a dataset with images")
        require_audio()
        images = QwenVLPlugin.build(spec, model_path, settings)
        extractor = load_processor_part(model_path, "AutoFeatureExtractor", "audio feature extractor")
        return cls(images, Qwen2AudioPlugin(spec, extractor, settings, processor_markers(model_path)))

    def fingerprint(self) -> dict[str, Any]:
        """Both parts' fingerprints."""
        return {"vision": self.parts["images"].fingerprint(), "audios": self.parts["audios"].fingerprint()}

    def expand(self, kind: str, path: str) -> str:
        """The media tokens of one image, video or audio."""
        return self.parts[kind].expand(kind, path)

    def model_inputs(self, media: dict[str, list[str]]) -> dict[str, Any]:
        """`pixel_values` / `image_grid_thw`, `pixel_values_videos` / `video_grid_thw` / `video_second_per_grid` and
        `input_features` / `feature_attention_mask` of the batch."""
        return {**self.parts["images"].model_inputs(media), **self.parts["audios"].model_inputs(media)}

    def token_inputs(self, input_ids: Any) -> tuple[Any, dict[str, Any]]:
        """The mask of image, video and audio tokens (the thinker derives positions from the ids alone)."""
        image_mask, _ = self.parts["images"].token_inputs(input_ids)
        audio_mask, _ = self.parts["audios"].token_inputs(input_ids)
        return image_mask | audio_mask, {}

    def bind(self, tokenizer: Any) -> None:
        """Learn both parts' token ids."""
        self.parts["images"].bind(tokenizer)
        self.parts["audios"].bind(tokenizer)
