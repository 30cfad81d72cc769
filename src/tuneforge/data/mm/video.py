"""Videos for media plugins: frames decoded with PyAV and sampled as LLaMA-Factory 0.9.5 samples them.

A video is a file (decoded with PyAV, `pip install 'tuneforge[video]'`) or a list of frame image files (taken as
already sampled, as LLaMA-Factory takes them). From a file, `video_fps` frames per second of its duration are kept,
at most `video_maxlen` and at most the stream's frame count, spread evenly over the whole stream. Frame lists travel
through the dataset as one string of paths joined by `FRAME_SEPARATOR` (`frames_value` / `frame_paths`), so the
media columns stay lists of strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuneforge.data.convert import RowError

FRAME_SEPARATOR = "\n"  # a line break never ends up inside a resolved media path of a dataset row


@dataclass(frozen=True)
class Clip:
    """A video's sampled frames (RGB PIL images), their source frame indices and timing."""

    frames: list[Any]
    indices: list[int]
    duration: float  # seconds
    sampled_fps: float  # sampled frames per second of the source


def frames_value(paths: list[str]) -> str:
    """One media-column value for a video given as frame image files."""
    return FRAME_SEPARATOR.join(paths)


def frame_paths(value: str) -> list[str] | None:
    """The frame files of a media-column value made by `frames_value`, or None for a video file."""
    return value.split(FRAME_SEPARATOR) if FRAME_SEPARATOR in value else None


def sample_indices(total_frames: int, duration: float, fps: float, maxlen: int) -> list[int]:
    """Which source frames are kept: `fps` per second of `duration`, at most `maxlen` and `total_frames`, evenly
    spread from the first frame to the last (a stream without a frame count gives its first `maxlen` frames)."""
    import numpy as np

    if total_frames == 0:
        return list(range(maxlen))
    count = min(total_frames, maxlen, max(1, math.floor(duration * fps)))
    return np.linspace(0, total_frames - 1, count).astype(np.int32).tolist()


def read_clip(value: str, fps: float, maxlen: int) -> Clip:
    """The sampled frames of a video file or frame list (a `RowError` when it cannot be read)."""
    paths = frame_paths(value)
    if paths is not None:
        return Clip([_frame(p) for p in paths], list(range(len(paths))), len(paths) / fps, fps)
    return _decoded(value, fps, maxlen)


def _decoded(path: str, fps: float, maxlen: int) -> Clip:
    import av

    try:
        with av.open(path, "r") as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise RowError(f"video {path!r} has no video stream")
            duration = float(stream.duration * stream.time_base) if stream.duration is not None else None
            wanted = set(sample_indices(stream.frames, duration or 0.0, fps, maxlen))
            frames, indices = [], []
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    frames.append(frame.to_image().convert("RGB"))
                    indices.append(number)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise RowError(f"video {path!r} cannot be decoded ({err})") from err
    if not frames:
        raise RowError(f"video {path!r} has no decodable frames")
    if duration is None:
        return Clip(frames, indices, len(frames) / fps, fps)
    return Clip(frames, indices, duration, len(wanted) / duration if duration else fps)


def _frame(path: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise RowError(f"video frame {path!r} cannot be read ({err})") from err
