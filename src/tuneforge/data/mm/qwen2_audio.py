"""Qwen2-Audio: each audio becomes `<|audio_bos|>`, one `<|AUDIO|>` per audio-encoder output position, `<|audio_eos|>`.

The feature extractor (Whisper log-mel, 10 ms frames, 30-second windows; longer audio is cut) gives one frame per
`hop_length` samples; the encoder halves the frames twice (a strided convolution, then pooling), so an audio of F
frames reads ((F - 1) // 2 + 1 - 2) // 2 + 1 tokens, the count Qwen2-Audio's processor and LLaMA-Factory compute.
The model takes `input_features` (padded to the 30-second window) and `feature_attention_mask`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tuneforge.data.mm.audio import load_audio, require_audio
from tuneforge.data.mm.base import MediaSettings, load_processor_part
from tuneforge.errors import DataError

# Qwen2AudioProcessor's defaults; a model's processor_config.json may name others
DEFAULT_MARKERS = {"audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}


class Qwen2AudioPlugin:
    """Audios for Qwen2-Audio (`mm_plugin: qwen2_audio`)."""

    kinds = ("audios",)

    def __init__(self, spec: Any, feature_extractor: Any, settings: MediaSettings, markers: dict[str, str]) -> None:
        self.name = spec.mm_plugin
        self.audio_token = spec.audio_token
        self.audio_bos, self.audio_eos = markers["audio_bos_token"], markers["audio_eos_token"]
        self.feature_extractor = feature_extractor
        self.settings = settings
        self.audio_token_id: int | None = None
        if settings.audio_sampling_rate != feature_extractor.sampling_rate:
            raise DataError(
                f"audio_sampling_rate is {settings.audio_sampling_rate}, but this model's feature extractor takes "
                f"{feature_extractor.sampling_rate} Hz audio; set `audio_sampling_rate: "
                f"{feature_extractor.sampling_rate}`."
            )

    @classmethod
    def build(cls, spec: Any, model_path: str, settings: MediaSettings) -> Qwen2AudioPlugin:
        """The plugin with the feature extractor (and audio markers) saved beside the model."""
        require_audio()
        extractor = load_processor_part(model_path, "AutoFeatureExtractor", "audio feature extractor")
        return cls(spec, extractor, settings, processor_markers(model_path))

    def fingerprint(self) -> dict[str, Any]:
        """The plugin, its tokens, the sampling rate and the feature extractor's settings."""
        tokens = [self.name, self.audio_token, self.audio_bos, self.audio_eos]
        rate = {"audio_sampling_rate": self.settings.audio_sampling_rate}
        return {"plugin": tokens, "limits": rate, "processor": self.feature_extractor.to_dict()}

    def audio_tokens(self, samples: int) -> int:
        """How many audio tokens the model reads for an audio of `samples` samples."""
        extractor = self.feature_extractor
        frames = math.ceil(min(samples, extractor.n_samples) / extractor.hop_length)
        return ((frames - 1) // 2 + 1 - 2) // 2 + 1

    def expand(self, kind: str, path: str) -> str:
        """The model's audio tokens between its audio markers, for the audio at `path`."""
        samples = load_audio(path, self.settings.audio_sampling_rate).shape[0]
        return self.audio_bos + self.audio_token * self.audio_tokens(samples) + self.audio_eos

    def model_inputs(self, media: dict[str, list[str]]) -> dict[str, Any]:
        """`input_features` and `feature_attention_mask` for the batch's audios, in order."""
        paths = media.get("audios") or []
        if not paths:
            return {}
        rate = self.settings.audio_sampling_rate
        features = self.feature_extractor(
            [load_audio(p, rate) for p in paths],
            sampling_rate=rate,
            return_attention_mask=True,
            padding="max_length",
            return_tensors="pt",
        )
        return {"input_features": features["input_features"], "feature_attention_mask": features["attention_mask"]}

    def token_inputs(self, input_ids: Any) -> tuple[Any, dict[str, Any]]:
        """The audio-token mask (Qwen2-Audio needs no other per-token inputs)."""
        return input_ids == self.audio_token_id, {}

    def bind(self, tokenizer: Any) -> None:
        """Learn the audio token's id from the run's tokenizer."""
        self.audio_token_id = tokenizer.convert_tokens_to_ids(self.audio_token)


def processor_markers(model_path: str) -> dict[str, str]:
    """The audio start/end markers the model's processor config names (Qwen2AudioProcessor's defaults otherwise)."""
    config = Path(model_path) / "processor_config.json"
    saved = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    return {key: saved.get(key, default) for key, default in DEFAULT_MARKERS.items()}
