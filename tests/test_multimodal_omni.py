"""Multimodal (Qwen2.5-Omni thinker): images, videos and audios in one model, LLaMA-Factory's ids, collation, frozen
parts."""

from __future__ import annotations

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
    tone,
    write_media_dataset,
)
from train_helpers import tiny_config

IGNORE = -100
IMAGE, AUDIO, VIDEO = 151665, 151666, 151667  # `<|IMAGE|>`, `<|AUDIO|>`, `<|VIDEO|>` in the tiny thinker's tokenizer


def prepare(
    model: Path, folder: Path, work: Path, dataset: str = "mm", template: str = "qwen2_omni", **overrides: Any
) -> Any:
    """The tokenized splits of `dataset` in `folder` with the qwen2_omni template (and the config)."""
    return prepare_media(model, folder, work, template, dataset, **overrides)


collate_all = collate_rows


def write_rows_with(folder: Path, rows: list[dict[str, Any]], *kinds: str) -> None:
    """`rows` as dataset `mm` in `folder`, with the media columns `kinds` registered."""
    write_media_dataset(folder, rows, kind=kinds[0])
    registry = json.loads((folder / "dataset_info.json").read_text())
    registry["mm"]["columns"] |= {kind: kind for kind in kinds}
    (folder / "dataset_info.json").write_text(json.dumps(registry))


def test_tiny_omni_thinker_loads_with_plain_transformers(tiny_qwen2_5_omni: Path) -> None:
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_5_omni)
    assert type(model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert type(AutoFeatureExtractor.from_pretrained(tiny_qwen2_5_omni)).__name__ == "WhisperFeatureExtractor"
    assert AutoImageProcessor.from_pretrained(tiny_qwen2_5_omni).merge_size == 2
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_5_omni)
    assert (
        (tokenizer.image_token_id, tokenizer.audio_token_id)
        == (IMAGE, AUDIO)
        == (
            model.config.image_token_id,
            model.config.audio_token_id,
        )
    )
    parts = [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "Hi"}]
    text = tokenizer.apply_chat_template([{"role": "user", "content": parts}], tokenize=False)
    assert "<|vision_bos|><|IMAGE|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>Hi<|im_end|>" in text
    pytest.importorskip("torchvision", reason="transformers builds Qwen2.5-Omni processors only with torchvision")
    from transformers import AutoProcessor

    assert type(AutoProcessor.from_pretrained(tiny_qwen2_5_omni)).__name__ == "Qwen2_5OmniProcessor"


def test_mllm_demo_and_audio_demo_ids_match_llamafactory(
    tiny_qwen2_5_omni: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """Fixture from scripts/lf_fixtures/encode_mllm_omni_demo.py: LLaMA-Factory 0.9.5's qwen2_omni template and
    plugin on the same tiny processor, for the image and the audio demo sets."""
    from transformers import AutoTokenizer

    fixture = json.loads((Path(__file__).parent / "fixtures" / "lf_mllm_omni_demo_ids.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_5_omni)
    for name, token in (("mllm_demo", IMAGE), ("mllm_audio_demo", AUDIO)):
        splits, _ = prepare(tiny_qwen2_5_omni, shared_dir / "lf-data", tmp_path / name, dataset=name)
        assert_matches_lf(splits.train, fixture[name], tokenizer)
        assert all(r["input_ids"].count(token) > 0 for r in splits.train)


def test_collator_carries_pixels_and_audio_features(tiny_qwen2_5_omni: Path, tmp_path: Path) -> None:
    """One row with an image and an audio: both encoders' inputs, both token kinds masked, and the thinker reads
    them (its loss is finite)."""
    import torch
    from transformers import AutoModelForImageTextToText

    square_image(tmp_path / "a.png", (255, 0, 0))
    tone(tmp_path / "a.wav", 440, seconds=1.0)
    mixed = row("<image><audio>Colour and pitch?", "red, low", ["a.png"])
    mixed["audios"] = ["a.wav"]
    write_rows_with(tmp_path, [mixed], "images", "audios")
    splits, cfg = prepare(tiny_qwen2_5_omni, tmp_path, tmp_path)
    batch = collate_all(cfg, splits)
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] and batch["input_features"].shape == (1, 128, 3000)
    ids = batch["input_ids"]
    assert (int((ids == IMAGE).sum()), int((ids == AUDIO).sum())) == (4, 25)
    assert (batch["labels"][(ids == IMAGE) | (ids == AUDIO)] == IGNORE).all()
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_5_omni)
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_mllm_video_audio_demo_ids_match_llamafactory(
    tiny_qwen2_5_omni: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """LLaMA-Factory 0.9.5's ids for `<video><audio>` rows (no `use_audio_in_video`): the video's tokens between the
    vision markers, then the audio's (same fixture script)."""
    from transformers import AutoTokenizer

    fixture = json.loads((Path(__file__).parent / "fixtures" / "lf_mllm_omni_demo_ids.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_5_omni)
    name = "mllm_video_audio_demo"
    splits, _ = prepare(tiny_qwen2_5_omni, shared_dir / "lf-data", tmp_path, dataset=name)
    assert_matches_lf(splits.train, fixture[name], tokenizer)
    assert [(r["input_ids"].count(VIDEO), r["input_ids"].count(AUDIO)) for r in splits.train] == [(80, 125)] * 3


def test_a_video_and_an_audio_reach_the_thinker(tiny_qwen2_5_omni: Path, tmp_path: Path) -> None:
    """One `<video><audio>` row: `<|vision_bos|>`, one `<|VIDEO|>` per merged block of each temporal patch,
    `<|vision_eos|>`, then the audio's run; the batch holds the thinker's video inputs (`video_second_per_grid`,
    its name for Qwen2.5-VL's `second_per_grid_ts`) and its forward reads them."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    clip_file(tmp_path / "a.mp4", square_frames([(220, 30, 30)] * 4), fps=4)
    tone(tmp_path / "a.wav", 440, seconds=1.0)
    media_row = {**row("<video><audio>Colour and pitch?", "red, low", ["a.mp4"], "videos"), "audios": ["a.wav"]}
    write_rows_with(tmp_path, [media_row], "videos", "audios")
    splits, cfg = prepare(tiny_qwen2_5_omni, tmp_path, tmp_path, video_fps=4.0)
    text = AutoTokenizer.from_pretrained(tiny_qwen2_5_omni).decode(splits.train[0]["input_ids"])
    assert "<|vision_bos|>" + "<|VIDEO|>" * 8 + "<|vision_eos|><|audio_bos|><|AUDIO|>" in text
    batch = collate_all(cfg, splits)
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]] and batch["pixel_values_videos"].shape[0] == 32
    assert batch["video_second_per_grid"].tolist() == [0.5]  # 2 frames per patch, 4 sampled per second
    assert "second_per_grid_ts" not in batch and "mm_token_type_ids" not in batch
    ids = batch["input_ids"]
    assert (batch["labels"][(ids == VIDEO) | (ids == AUDIO)] == IGNORE).all()
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_5_omni)
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_media_reach_the_thinker_through_the_inference_engine(tiny_qwen2_5_omni: Path, tmp_path: Path) -> None:
    """`Engine.chat` with a video, another video, a video and an audio, an image, an audio and nothing: the thinker's
    M-RoPE positions are computed from its own inputs (audio lengths, seconds per video patch), and six different
    greedy answers from large random weights show every kind is read."""
    clip_file(tmp_path / "a.mp4", square_frames([(220, 30, 30)] * 2 + [(30, 50, 220)] * 2))
    clip_file(tmp_path / "b.mp4", square_frames([(30, 180, 40)] * 4))
    tone(tmp_path / "a.wav", 440, seconds=1.0)
    square_image(tmp_path / "a.png", (255, 0, 0))
    a, b, wav, png = (str(tmp_path / name) for name in ("a.mp4", "b.mp4", "a.wav", "a.png"))
    engine = random_vlm_engine(tiny_qwen2_5_omni, "qwen2_omni")
    question = [{"role": "user", "content": "What?"}]
    media = [{"videos": [a]}, {"videos": [b]}, {"videos": [a], "audios": [wav]}, {"images": [png]}, {"audios": [wav]}]
    answers = {engine.chat(question, media=m, temperature=0, max_new_tokens=5).content for m in [*media, None]}
    assert len(answers) == 6


def test_use_audio_in_video_is_refused_with_the_omni_plugin(tiny_qwen2_5_omni: Path, tmp_path: Path) -> None:
    from tuneforge.errors import ConfigError

    clip_file(tmp_path / "a.mp4", square_frames([(220, 30, 30)] * 2))
    write_rows_with(tmp_path, [row("<video>Colour?", "red", ["a.mp4"], "videos")], "videos")
    with pytest.raises(ConfigError, match="use_audio_in_video: the qwen2_omni plugin does not interleave"):
        prepare(tiny_qwen2_5_omni, tmp_path, tmp_path, use_audio_in_video=True)


def test_frozen_parts_cover_the_vision_and_audio_towers(tiny_qwen2_5_omni: Path, tmp_path: Path) -> None:
    from tuneforge.models.adapters import apply_finetuning
    from tuneforge.models.loader import load_model, load_tokenizer

    cfg = tiny_config(tiny_qwen2_5_omni, tmp_path / "o", finetuning_type="lora", lora_target="all")
    model = apply_finetuning(load_model(cfg, load_tokenizer(cfg), trainable=True), cfg, trainable=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)


def test_image_and_audio_datasets_share_one_column_order() -> None:
    """An image dataset and an audio dataset concatenate (mllm_demo mixed with mllm_audio_demo)."""
    import pyarrow as pa

    from tuneforge.data.media import with_media_columns

    images = with_media_columns(pa.table({"input_ids": [[1]], "images": [["a.png"]]}))
    audios = with_media_columns(pa.table({"input_ids": [[2]], "audios": [["a.wav"]]}))
    assert images.column_names == audios.column_names == ["input_ids", "images", "videos", "audios"]
    assert pa.concat_tables([images, audios]).num_rows == 2
