"""Videos (Qwen2-VL / Qwen2.5-VL): PyAV decoding and LLaMA-Factory's frame sampling, video tokens, the video
processor's tensors without torchvision, LF's ids for mllm_video_demo, bad rows, the video limits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from media_helpers import (
    assert_matches_lf,
    clip_file,
    collate_rows,
    prepare_media,
    random_vlm_engine,
    row,
    square_frames,
    square_image,
    write_media_dataset,
)

FIXTURES = Path(__file__).parent / "fixtures"
SCRIPT = Path(__file__).parents[1] / "scripts" / "lf_fixtures" / "video_processor.py"
RED, GREEN, BLUE = (220, 30, 30), (30, 180, 40), (30, 50, 220)


def prepare(
    model: Path,
    folder: Path,
    dataset: str = "mm",
    work: Path | None = None,
    template: str = "qwen2_vl",
    **overrides: Any,
) -> Any:
    """The tokenized splits of `dataset` in `folder` (outputs and cache under `work`), and the config."""
    return prepare_media(model, folder, work or folder, template, dataset, **overrides)


collate = collate_rows


def _reference_script() -> Any:
    spec = importlib.util.spec_from_file_location("video_processor_fixture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frames_are_sampled_as_llamafactory_samples_them() -> None:
    from tuneforge.data.mm.video import sample_indices

    # 1.mp4 of mllm_video_demo: 243 frames over 9.72 s -> 19 frames at 2 fps, first to last
    indices = sample_indices(243, 9.72, 2.0, 128)
    assert len(indices) == 19 and indices[0] == 0 and indices[-1] == 242
    assert sample_indices(150, 5.0, 2.0, 128) == [0, 16, 33, 49, 66, 82, 99, 115, 132, 149]
    assert len(sample_indices(243, 9.72, 2.0, 8)) == 8  # video_maxlen
    assert sample_indices(3, 0.1, 2.0, 128) == [0]  # at least one frame
    assert sample_indices(0, 0.0, 2.0, 4) == [0, 1, 2, 3]  # no frame count: the first video_maxlen frames


def test_torch_video_processor_equals_transformers_video_processor(tiny_qwen2_vl: Path, shared_dir: Path) -> None:
    """Fixture from scripts/lf_fixtures/video_processor.py (transformers' Qwen2VLVideoProcessor with torchvision):
    the tensors built without torchvision are bit-identical, for clips on and off the patch grid, with an odd frame
    count, down- and upscaled, and the demo video's sampled frames."""
    from tuneforge.data.mm.qwen_video import TorchVideoProcessor, VideoSettings

    script = _reference_script()
    fixture = json.loads((FIXTURES / "qwen2_vl_video_processor.json").read_text())
    config = json.loads((tiny_qwen2_vl / "video_preprocessor_config.json").read_text())
    processor = TorchVideoProcessor(VideoSettings.from_dict(config))
    clips = {name: script.synthetic_frames(*spec) for name, spec in script.SYNTHETIC.items()}
    clips["mllm_demo_4"] = script.demo_frames(shared_dir / "lf-data" / "mllm_demo_data" / "4.mp4")
    assert set(clips) == set(fixture["clips"])
    for name, frames in clips.items():
        out = processor([frames])
        assert script.summary(out["pixel_values_videos"], out["video_grid_thw"][0].tolist()) == fixture["clips"][name]


def test_mllm_video_demo_ids_and_labels_match_llamafactory(tiny_qwen2_vl: Path, shared_dir: Path, tmp_path: Path):
    """Fixture from scripts/lf_fixtures/encode_mllm_demo.py: LLaMA-Factory 0.9.5's qwen2_vl plugin with the default
    video limits on the same tiny processor; equal up to the end-of-turn newline README lists."""
    from transformers import AutoTokenizer

    fixture = json.loads((FIXTURES / "lf_mllm_video_demo_ids.json").read_text())
    config = json.loads((tiny_qwen2_vl / "video_preprocessor_config.json").read_text())
    assert {k: config[k] for k in fixture["video_processor"]} == fixture["video_processor"]
    splits, _ = prepare(tiny_qwen2_vl, shared_dir / "lf-data", "mllm_video_demo", tmp_path)
    assert_matches_lf(splits.train, fixture["rows"], AutoTokenizer.from_pretrained(tiny_qwen2_vl))


def test_video_rows_become_video_tokens_and_tensors(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """A video file (4 frames at 2 fps: 4 sampled) and a list of 3 frame images (padded to 4): 56 px frames are
    2 temporal x 4x4 patches = 8 merged tokens each, kept out of the loss, typed 2 for the model's rope index."""
    from PIL import Image

    from tuneforge.models.loader import load_tokenizer

    clip_file(tmp_path / "a.mp4", square_frames([RED, RED, BLUE, BLUE]))
    for i, frame in enumerate(square_frames([GREEN, GREEN, RED])):
        Image.fromarray(frame).save(tmp_path / f"f{i}.png")
    rows = [
        row("<video>Which colour comes first?", "red", ["a.mp4"], "videos"),
        row("<video>Which colour comes first?", "green", [["f0.png", "f1.png", "f2.png"]], "videos"),
    ]
    write_media_dataset(tmp_path, rows, kind="videos")
    splits, cfg = prepare(tiny_qwen2_vl, tmp_path)
    pad = load_tokenizer(cfg).convert_tokens_to_ids("<|video_pad|>")
    assert [r["input_ids"].count(pad) for r in splits.train] == [8, 8]
    assert splits.train[1]["videos"][0].split("\n") == [str(tmp_path / f"f{i}.png") for i in range(3)]
    batch = collate(cfg, splits)
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4], [2, 4, 4]]
    assert tuple(batch["pixel_values_videos"].shape) == (64, 3 * 2 * 14 * 14)
    is_video = batch["input_ids"] == pad
    assert (batch["mm_token_type_ids"][is_video] == 2).all() and batch["mm_token_type_ids"][~is_video].sum() == 0
    assert (batch["labels"][is_video] == -100).all()


def test_video_limits_change_frames_and_tokens(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """video_fps, video_maxlen and video_max_pixels act: 8 frames of 112 px over 4 s."""
    clip_file(tmp_path / "a.mp4", square_frames([RED] * 8, size=112))
    write_media_dataset(tmp_path, [row("<video>Colour?", "red", ["a.mp4"], "videos")], kind="videos")
    counts = {}
    settings = {"default": {}, "fps": {"video_fps": 1.0}, "maxlen": {"video_maxlen": 2}, "pixels": {}}
    settings["pixels"] = {"video_max_pixels": 56 * 56}
    for name, overrides in settings.items():
        splits, _ = prepare(tiny_qwen2_vl, tmp_path, **overrides)  # one cache: the limits are in its key
        counts[name] = splits.train[0]["input_ids"].count(151656)
    # 112 px = 8x8 patches = 16 merged tokens per temporal pair; 56 px: 4
    assert counts == {"default": 4 * 16, "fps": 2 * 16, "maxlen": 16, "pixels": 4 * 4}


def test_bad_video_rows_are_reported_with_their_row_numbers(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    clip_file(tmp_path / "a.mp4", square_frames([RED, RED]))
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 10)
    rows = [
        row("<video>Colour?", "red", ["a.mp4"], "videos"),
        row("<video>Colour?", "red", ["missing.mp4"], "videos"),
        row("<video><video>Colour?", "red", ["a.mp4"], "videos"),
        row("<video>Colour?", "red", ["broken.mp4"], "videos"),
        row("<video>Colour?", "red", [["missing.png"]], "videos"),
        row("<video>Colour?", "red", [[]], "videos"),
    ]
    write_media_dataset(tmp_path, rows, kind="videos")
    splits, _ = prepare(tiny_qwen2_vl, tmp_path)
    problems = "\n".join(splits.stats.problems)
    assert splits.train.num_rows == 1
    assert "row 2" in problems and "video file 'missing.mp4' not found" in problems
    assert "row 3" in problems and "2 <video> marks in the messages but 1 videos" in problems
    assert "row 4" in problems and "broken.mp4" in problems and "cannot be decoded" in problems
    assert "row 5" in problems and "frame file 'missing.png' not found" in problems
    assert "row 6" in problems and "non-empty list of frame image files" in problems


def test_a_dataset_with_videos_needs_pyav(tiny_qwen2_vl: Path, tmp_path: Path, monkeypatch) -> None:
    from tuneforge.errors import ConfigError

    write_media_dataset(tmp_path, [row("<video>Colour?", "red", ["a.mp4"], "videos")], kind="videos")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'tuneforge\[video\]'"):
        prepare(tiny_qwen2_vl, tmp_path)


def test_qwen2_5_vl_reads_seconds_per_temporal_patch(tmp_path: Path) -> None:
    """Qwen2.5-VL's rope index spaces temporal patches by `second_per_grid_ts`: temporal_patch_size / sampled fps."""
    import torch
    from transformers import AutoModelForImageTextToText

    from tuneforge.models.tiny import make_tiny

    model_dir = make_tiny("qwen2_5_vl", tmp_path / "model", seed=0)
    clip_file(tmp_path / "a.mp4", square_frames([RED, RED, BLUE, BLUE]), fps=4)
    write_media_dataset(tmp_path, [row("<video>Colour?", "red", ["a.mp4"], "videos")], kind="videos")
    splits, cfg = prepare(model_dir, tmp_path, video_fps=4.0)
    batch = collate(cfg, splits)
    assert batch["second_per_grid_ts"].tolist() == [0.5]  # 2 frames per patch, 4 sampled per second
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    with torch.no_grad():
        assert model(**batch).loss.isfinite()


def test_qwen3_vl_videos_are_refused_per_row(tmp_path: Path) -> None:
    from tuneforge.data.mm import plugin_kinds
    from tuneforge.errors import DataError
    from tuneforge.models.tiny import make_tiny

    assert (plugin_kinds("qwen2_vl"), plugin_kinds("qwen3_vl")) == (("images", "videos"), ("images",))
    model_dir = make_tiny("qwen3_vl", tmp_path / "model", seed=0)
    clip_file(tmp_path / "a.mp4", square_frames([RED, RED]))
    write_media_dataset(tmp_path, [row("<video>Colour?", "red", ["a.mp4"], "videos")], kind="videos")

    with pytest.raises(DataError, match="row 1: this model's media plugin takes images, not videos"):
        prepare(model_dir, tmp_path, template="qwen3_vl_nothink")


def test_a_row_with_an_image_and_a_video_reaches_the_model(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """Both kinds in one row: image tokens typed 1, video tokens typed 2, both grids given, and the model's rope
    index walks them in order (a finite loss)."""
    import torch
    from transformers import AutoModelForImageTextToText

    square_image(tmp_path / "a.png", BLUE)
    clip_file(tmp_path / "a.mp4", square_frames([RED, RED]))
    media_row = {**row("<image>Then <video>Colours?", "blue, red", ["a.png"]), "videos": ["a.mp4"]}
    write_media_dataset(tmp_path, [media_row])
    registry = json.loads((tmp_path / "dataset_info.json").read_text())
    registry["mm"]["columns"]["videos"] = "videos"
    (tmp_path / "dataset_info.json").write_text(json.dumps(registry))
    splits, cfg = prepare(tiny_qwen2_vl, tmp_path)
    batch = collate(cfg, splits)
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] and batch["video_grid_thw"].tolist() == [[1, 4, 4]]
    assert (batch["mm_token_type_ids"] == 1).sum() == 4 and (batch["mm_token_type_ids"] == 2).sum() == 4
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl)
    with torch.no_grad():
        assert model(**batch).loss.isfinite()


def test_a_video_reaches_the_model_through_the_inference_engine(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """`Engine.chat(media={"videos": ...})` expands through the same plugin (mark placed first, as LF does): two
    clips and no clip give three different greedy answers from large random weights."""
    clip_file(tmp_path / "a.mp4", square_frames([RED, RED, BLUE, BLUE]))
    clip_file(tmp_path / "b.mp4", square_frames([GREEN] * 4))
    engine = random_vlm_engine(tiny_qwen2_vl, "qwen2_vl")
    question = [{"role": "user", "content": "What colour?"}]
    media = [{"videos": [str(tmp_path / "a.mp4")]}, {"videos": [str(tmp_path / "b.mp4")]}, None]
    answers = {engine.chat(question, media=m, temperature=0, max_new_tokens=5).content for m in media}
    assert len(answers) == 3
