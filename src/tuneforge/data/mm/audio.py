"""Audio files for audio-language plugins: decoded with soundfile (wav, flac, ogg, mp3), mixed down to mono and
resampled with soxr to the run's `audio_sampling_rate`, as LLaMA-Factory reads audios (channel mean, then resampling
to a length of ceil(samples x new rate / old rate))."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tuneforge.data.convert import RowError

if TYPE_CHECKING:
    import numpy as np

AUDIO_MODULES = ("soundfile", "soxr")  # the `audio` extra


def require_audio() -> None:
    """Stop before any work, naming the `audio` extra, when soundfile or soxr is missing."""
    from tuneforge.extras import require

    for module in AUDIO_MODULES:
        require(module, "a dataset with audios")


def load_audio(path: str, sampling_rate: int) -> np.ndarray:
    """The audio file at `path` as mono float32 samples at `sampling_rate`, or a row error saying it cannot be
    read."""
    import numpy as np
    import soundfile

    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError) as err:
        raise RowError(f"audio {path!r} cannot be read ({err})") from err
    if samples.shape[0] == 0:
        raise RowError(f"audio {path!r} holds no samples")
    mono = samples.mean(axis=1)
    if rate == sampling_rate:
        return mono
    import soxr

    length = math.ceil(mono.shape[0] * sampling_rate / rate)
    resampled = soxr.resample(mono, rate, sampling_rate).astype(np.float32)
    if resampled.shape[0] >= length:
        return resampled[:length]
    return np.pad(resampled, (0, length - resampled.shape[0]))
