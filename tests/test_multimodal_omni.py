"""Multimodal (Qwen2.5-Omni thinker): images and audios in one model, LLaMA-Factory's ids, collation, frozen parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from media_helpers import assert_matches_lf, row, square_image, tone, write_media_dataset
from train_helpers import tiny_config

IGNORE = -100
IMAGE, AUDIO = 151665, 151666  # `<|IMAGE|>`, `<|AUDIO|>` in the tiny thinker's tokenizer


def prepare(model: Path, folder: Path, work: Path, dataset: str = "mm", **overrides: Any) -> Any:
    """The tokenized splits of `dataset` in `folder` with the qwen2_omni template (and the config)."""
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    options = {"template": "qwen2_omni", "dataset": dataset, "dataset_dir": str(folder), "cutoff_len": 2048}
    options["cache_dir"] = str(work / "cache")
    cfg = tiny_config(model, work / "out", **{**options, **overrides})
    return prepare_dataset(cfg, load_tokenizer(cfg)), cfg


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

    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import media_collator
    from tuneforge.models.loader import load_tokenizer

    square_image(tmp_path / "a.png", (255, 0, 0))
    tone(tmp_path / "a.wav", 440, seconds=1.0)
    mixed = row("<image><audio>Colour and pitch?", "red, low", ["a.png"])
    mixed["audios"] = ["a.wav"]
    write_media_dataset(tmp_path, [mixed])
    registry = json.loads((tmp_path / "dataset_info.json").read_text())
    registry["mm"]["columns"]["audios"] = "audios"
    (tmp_path / "dataset_info.json").write_text(json.dumps(registry))
    splits, cfg = prepare(tiny_qwen2_5_omni, tmp_path, tmp_path)
    tokenizer = load_tokenizer(cfg)
    collate = media_collator(cfg.model, tokenizer, splits.template, PaddingCollator(tokenizer.pad_token_id))
    batch = collate([splits.train[0]])
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] and batch["input_features"].shape == (1, 128, 3000)
    ids = batch["input_ids"]
    assert (int((ids == IMAGE).sum()), int((ids == AUDIO).sum())) == (4, 25)
    assert (batch["labels"][(ids == IMAGE) | (ids == AUDIO)] == IGNORE).all()
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_5_omni)
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


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
