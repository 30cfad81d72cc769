"""Training tiny Qwen2-VL on videos end to end: a test that the frames matter (mllm_video_demo trains in
test_multimodal_train.py).

`learned_video_model` trains once per module and gives the trained folder with held-out clips, so other assertions
(e.g. the chat / API path) can reuse it; `media_helpers.held_out_answers` answers its held-out clips with plain
`generate`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from media_helpers import (
    LEARNING_RECIPE,
    api_answers,
    chat_answers,
    clip_file,
    held_out_answers,
    square_frames,
    write_media_dataset,
)
from train_helpers import tiny_config

pytestmark = pytest.mark.slow

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 220)}
QUESTION = "<video>What colour is the square?"  # as chat / the API place a video: before the text
WHITE = (255, 255, 255)
SIZE = 112  # frame side: 8x8 patches, 16 video tokens per temporal patch


@dataclass(frozen=True)
class LearnedVideoModel:
    """A tiny Qwen2-VL trained to name the colour of the square in a clip, and the folder of its held-out set."""

    model_dir: Path
    data_dir: Path
    options: dict[str, Any]  # template, dataset_dir, cache_dir for configs that read `test`
    held_out: list[dict[str, Any]]  # the rows of `test`


def square_clip_rows(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """n rows over 4-frame clips at 2 fps (all 4 frames sampled: 2 temporal patches of 112 px, 32 video tokens): a
    square of one colour (jittered) and random place and size in the first two frames or the last two, plain white
    frames beside them; the answer is its colour."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = list(COLOURS)[i % 3]
        colours = [_jitter(COLOURS[name], rng)] * 2 + [WHITE] * 2
        side = rng.randint(SIZE * 3 // 4, SIZE)
        box = (rng.randint(0, SIZE - side), rng.randint(0, SIZE - side), side)
        frames = square_frames(colours if rng.random() < 0.5 else colours[::-1], SIZE, box)
        path = f"clips/{seed}_{i}.mp4"
        clip_file(folder / path, frames)
        messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": name}]
        rows.append({"messages": messages, "videos": [path]})
    return rows


def _jitter(colour: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)


@pytest.fixture(scope="module")
def learned_video_model(tiny_qwen2_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> LearnedVideoModel:
    """Full fine-tuning (vision tower and projector frozen, as by default) on 36 clips; 9 held-out clips in `test`."""
    from tuneforge.train.sft import run_sft

    folder = tmp_path_factory.mktemp("video_square")
    write_media_dataset(folder, square_clip_rows(folder, 36, seed=0), name="train", kind="videos")
    options = {"template": "qwen2_vl", "dataset_dir": str(folder), "cache_dir": str(folder / "cache")}
    out = folder / "out"
    cfg = tiny_config(tiny_qwen2_vl, out, dataset="train", **LEARNING_RECIPE, **options)
    run_sft(cfg)
    test_rows = square_clip_rows(folder, 9, seed=1)
    write_media_dataset(folder, test_rows, name="test", kind="videos")
    return LearnedVideoModel(out, folder, options, test_rows)


def test_the_square_colour_is_learned_from_the_frames(learned_video_model: LearnedVideoModel) -> None:
    """Only the clip's frames tell the answer (in the first or the second half of the clip)."""
    learned = learned_video_model
    test_cfg = tiny_config(learned.model_dir, learned.data_dir / "unused", dataset="test", **learned.options)
    expected, answers = held_out_answers(learned.model_dir, test_cfg)
    assert sorted(set(expected)) == ["blue", "green", "red"]
    assert answers == expected


def test_the_trained_model_answers_videos_through_the_api_and_chat(learned_video_model: LearnedVideoModel) -> None:
    """The same held-out clips as `video_url` data: URL parts to the API, and through `tuneforge chat --video` /
    `/video` (three of them, a subprocess each start is slow)."""
    learned, greedy = learned_video_model, {"do_sample": False, "max_new_tokens": 3}
    clips = [learned.data_dir / r["videos"][0] for r in learned.held_out]
    expected = [r["messages"][1]["content"] for r in learned.held_out]
    question = QUESTION.removeprefix("<video>")
    assert api_answers(learned.model_dir, "qwen2_vl", "videos", clips, question, greedy) == expected
    assert chat_answers(learned.model_dir, "qwen2_vl", "videos", clips[:3], question, greedy) == expected[:3]
