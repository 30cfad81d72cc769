"""Training tiny vision-language models end to end: LLaMA-Factory's mllm_demo and mllm_video_demo, and a test that the
images matter."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from media_helpers import LEARNING_RECIPE, api_answers, chat_answers, write_media_dataset
from train_helpers import read_log, tiny_config

pytestmark = pytest.mark.slow

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 220)}
QUESTION = "What colour is the square?"


def square_rows(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """n rows "What colour is the square?" over 112-px images (16 image tokens) of a jittered square of random place
    and size on white."""
    from PIL import Image

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = list(COLOURS)[i % 3]
        image = Image.new("RGB", (112, 112), (255, 255, 255))
        side = rng.randint(90, 112)
        x, y = rng.randint(0, 112 - side), rng.randint(0, 112 - side)
        colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS[name])
        image.paste(colour, (x, y, x + side, y + side))
        path = f"img/{seed}_{i}.png"
        (folder / "img").mkdir(exist_ok=True)
        image.save(folder / path)
        messages = [
            {"role": "user", "content": f"<image>{QUESTION}"},
            {"role": "assistant", "content": name},
        ]
        rows.append({"messages": messages, "images": [path]})
    return rows


@pytest.mark.parametrize("dataset", ["mllm_demo", "mllm_video_demo"])
def test_mllm_demo_trains_with_lora_on_the_language_model(
    tiny_qwen2_vl: Path, shared_dir: Path, tmp_path: Path, dataset: str
) -> None:
    from tuneforge.train.sft import run_sft

    out = tmp_path / "out"
    cfg = tiny_config(
        tiny_qwen2_vl,
        out,
        template="qwen2_vl",
        dataset=dataset,
        dataset_dir=str(shared_dir / "lf-data"),
        cache_dir=str(tmp_path / "cache"),
        max_steps=2,
        per_device_train_batch_size=3,
    )
    metrics = run_sft(cfg)
    assert metrics["train_loss"] > 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    targets = adapter["target_modules"]
    assert targets and all("language_model" in t for t in targets)  # the vision tower stays frozen


def test_the_square_colour_is_learned_from_the_image(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """Only the image tells the colour: after training (vision tower and projector frozen, as by default), held-out
    images of each colour are answered correctly by `do_predict` (the dataset path), the API (data: URLs) and
    `tuneforge chat` (--image and /image)."""
    from tuneforge.train import run_training

    write_media_dataset(tmp_path, square_rows(tmp_path, 48, seed=0), name="train")
    held_out = square_rows(tmp_path, 9, seed=1)
    write_media_dataset(tmp_path, held_out, name="test")
    out = tmp_path / "out"
    options = {"template": "qwen2_vl", "dataset_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    greedy = {"do_sample": False, "max_new_tokens": 3}
    cfg = tiny_config(
        tiny_qwen2_vl,
        out,
        dataset="train",
        eval_dataset="test",
        do_train=True,
        do_predict=True,
        predict_with_generate=True,
        per_device_eval_batch_size=4,
        **LEARNING_RECIPE,
        **options,
        **greedy,
    )
    run_training(cfg)

    expected = [row["messages"][1]["content"] for row in held_out]
    images = [tmp_path / row["images"][0] for row in held_out]
    assert sorted(set(expected)) == ["blue", "green", "red"]
    predictions = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert [p["label"] for p in predictions] == expected
    assert [p["predict"].strip() for p in predictions] == expected
    assert api_answers(out, "qwen2_vl", "images", images, QUESTION, greedy) == expected
    assert chat_answers(out, "qwen2_vl", "images", images[:3], QUESTION, greedy) == expected[:3]


@pytest.mark.parametrize(
    ("arch", "freeze_tower"), [("llava", True), ("llava_next", False), ("gemma3_vl", False), ("intern_vl", True)]
)
def test_mllm_demo_trains_on_each_image_family(
    arch: str, freeze_tower: bool, tiny_vlm: Any, shared_dir: Path, tmp_path: Path
) -> None:
    """LoRA on mllm_demo (one batch of its 6 rows, 2 steps): the loss falls, and the saved adapter covers the
    vision tower exactly when `freeze_vision_tower` is off (the projector stays frozen, as by default)."""
    from tuneforge.train.sft import run_sft

    out = tmp_path / "out"
    template = {"gemma3_vl": "gemma3"}.get(arch, arch)  # make-tiny's `gemma3` is the text-only model
    options = {"template": template, "dataset": "mllm_demo", "dataset_dir": str(shared_dir / "lf-data")}
    options |= {"freeze_vision_tower": freeze_tower, "lora_target": "all", "cache_dir": str(tmp_path / "cache")}
    cfg = tiny_config(tiny_vlm(arch), out, max_steps=2, per_device_train_batch_size=6, **options)
    run_sft(cfg)
    losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert len(losses) == 2 and losses[-1] < losses[0], losses
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as saved:
        adapted = list(saved.keys())
    assert any("vision_tower" in k for k in adapted) is not freeze_tower
    assert any("language_model" in k for k in adapted) and not any("projector" in k for k in adapted)
