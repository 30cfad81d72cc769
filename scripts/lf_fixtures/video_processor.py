"""Record what transformers' own Qwen2-VL video processor gives for a few small clips (fixture generator).

transformers builds Qwen-VL video processors only with torchvision, which CI does not have; tuneforge then builds the
same tensors itself (src/tuneforge/data/mm/qwen_video.py). This script runs the real processor in a side environment
with torchvision (torch + torchvision + transformers 5.24 + pillow + av + numpy; tuneforge itself is not imported)
and writes tests/fixtures/qwen2_vl_video_processor.json: per clip the grid, the shape, sums and the sha256 of the
float32 `pixel_values_videos`, and a slice of it. tests/test_video.py rebuilds the clips and compares.

    tuneforge make-tiny --arch qwen2_vl --out /tmp/tiny_qwen2_vl
    /work/tvvenv/bin/python scripts/lf_fixtures/video_processor.py /tmp/tiny_qwen2_vl

Clips: seeded random frames of several sizes (one already on the patch grid, one with an odd frame count, one
downscaled and one upscaled by the processor's pixel limits), and the frames of LLaMA-Factory's demo video
`mllm_demo_data/4.mp4` that `video_fps: 2` samples (10 frames spread over its 150), downscaled to 64x48.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO_VIDEO = ROOT.parent / "shared" / "lf-data" / "mllm_demo_data" / "4.mp4"
DEMO_FRAMES = [int(i) for i in (0, 16, 33, 49, 66, 82, 99, 115, 132, 149)]  # linspace(0, 149, 10), truncated
DEMO_SIZE = (64, 48)
# name -> (width, height, frames, seed)
SYNTHETIC = {
    "on_grid": (56, 56, 4, 0),
    "odd_frames": (70, 50, 3, 1),
    "downscaled": (200, 120, 2, 2),
    "upscaled": (20, 30, 2, 3),
}


def synthetic_frames(width: int, height: int, frames: int, seed: int) -> list[Any]:
    """Seeded random RGB frames (numpy's PCG64 stream, stable across numpy versions)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    return [Image.fromarray(frame) for frame in pixels]


def demo_frames(path: Path = DEMO_VIDEO) -> list[Any]:
    """The demo video's sampled frames, downscaled to `DEMO_SIZE` (PIL's default bicubic)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_image() for i, f in enumerate(container.decode(stream)) if i in DEMO_FRAMES]
    return [frame.convert("RGB").resize(DEMO_SIZE) for frame in decoded]


def summary(pixels: Any, grid: list[int]) -> dict[str, Any]:
    """What the fixture keeps of one clip's tensors."""
    import numpy as np

    values = np.ascontiguousarray(pixels.numpy().astype(np.float32))
    return {
        "grid": grid,
        "shape": list(values.shape),
        "sum": float(values.sum(dtype=np.float64)),
        "abs_sum": float(np.abs(values).sum(dtype=np.float64)),
        "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        "head": values[0, :8].tolist(),
        "tail": values[-1, -8:].tolist(),
    }


def main() -> int:
    from transformers import AutoVideoProcessor

    processor = AutoVideoProcessor.from_pretrained(sys.argv[1])
    clips = {name: synthetic_frames(*spec) for name, spec in SYNTHETIC.items()}
    clips["mllm_demo_4"] = demo_frames()
    out: dict[str, Any] = {"processor": type(processor).__name__, "clips": {}}
    for name, frames in clips.items():
        batch = processor(videos=[frames], return_tensors="pt")
        out["clips"][name] = summary(batch["pixel_values_videos"], batch["video_grid_thw"][0].tolist())
    target = ROOT / "tests" / "fixtures" / "qwen2_vl_video_processor.json"
    target.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(out['clips'])} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
