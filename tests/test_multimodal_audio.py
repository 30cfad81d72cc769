"""Multimodal (audio): the tiny Qwen2-Audio, LLaMA-Factory audio rows, audio tokens, collation, frozen parts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from media_helpers import assert_matches_lf, row, tone, write_media_dataset
from train_helpers import tiny_config

IGNORE = -100
AUDIO = 151665  # `<|AUDIO|>` in the tiny model's tokenizer (appended after the Qwen2 specials)


def prepare(model: Path, folder: Path, work: Path | None = None, dataset: str = "mm", **overrides: Any) -> Any:
    """The tokenized splits of `dataset` in `folder` with the qwen2_audio template (and the config), with outputs
    and cache under `work`."""
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    work = work or folder
    options = {"template": "qwen2_audio", "dataset": dataset, "dataset_dir": str(folder), "cutoff_len": 2048}
    options["cache_dir"] = str(work / "cache")
    cfg = tiny_config(model, work / "out", **{**options, **overrides})
    return prepare_dataset(cfg, load_tokenizer(cfg)), cfg


def audio_row(question: str, answer: str, audios: list[str]) -> dict[str, Any]:
    return row(question, answer, audios, kind="audios")


def test_tiny_qwen2_audio_loads_with_plain_transformers(tiny_qwen2_audio: Path) -> None:
    """AutoProcessor expands one second of audio into the tokens the plugin counts; the model reads them."""
    import numpy as np
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoProcessor

    from tuneforge.data.mm.qwen2_audio import Qwen2AudioPlugin

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_qwen2_audio)
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio)
    assert type(model).__name__ == "Qwen2AudioForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2AudioProcessor"
    assert model.config.audio_token_id == AUDIO == processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    messages = [{"role": "user", "content": [{"type": "audio", "audio_url": "x"}, {"type": "text", "text": "Hi"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nHi<|im_end|>" in text
    audio = np.zeros(16000, dtype=np.float32)
    inputs = processor(text=text, audio=[audio], sampling_rate=16000, return_tensors="pt")
    plugin = Qwen2AudioPlugin.__new__(Qwen2AudioPlugin)
    plugin.feature_extractor = processor.feature_extractor
    assert int((inputs["input_ids"] == AUDIO).sum()) == plugin.audio_tokens(16000) == 25
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[:2] == inputs["input_ids"].shape


def test_the_loader_picks_the_audio_text_class(tiny_qwen2_audio: Path, tmp_path: Path) -> None:
    from tuneforge.models.loader import load_model, load_tokenizer

    cfg = tiny_config(tiny_qwen2_audio, tmp_path / "o", template="qwen2_audio")
    model = load_model(cfg, load_tokenizer(cfg), trainable=False)
    assert type(model).__name__ == "Qwen2AudioForConditionalGeneration"


def test_mllm_audio_demo_ids_and_labels_match_llamafactory(
    tiny_qwen2_audio: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """Fixture from scripts/lf_fixtures/encode_mllm_audio_demo.py: LLaMA-Factory 0.9.5's qwen2_audio template and
    plugin on the same tiny processor (mp3 at 48 kHz, wav and flac at 16 kHz); audio tokens and markers equal."""
    from transformers import AutoFeatureExtractor, AutoTokenizer

    fixture = json.loads((Path(__file__).parent / "fixtures" / "lf_mllm_audio_demo_ids.json").read_text())
    extractor = AutoFeatureExtractor.from_pretrained(tiny_qwen2_audio).to_dict()
    assert {k: extractor[k] for k in fixture["feature_extractor"]} == fixture["feature_extractor"]
    splits, _ = prepare(tiny_qwen2_audio, shared_dir / "lf-data", tmp_path, dataset="mllm_audio_demo")
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_audio)
    assert_matches_lf(splits.train, fixture["rows"], tokenizer)
    counts = [r["input_ids"].count(AUDIO) for r in splits.train]
    assert counts == [101, 73, 146]  # 4.03 s, 2.90 s and 5.86 s of audio at 25 tokens a second
    first = splits.train[0]
    assert [Path(p).name for p in first["audios"]] == ["1.mp3"]
    assert all(label == IGNORE for t, label in zip(first["input_ids"], first["labels"], strict=True) if t == AUDIO)


def test_resampling_and_channels_follow_audio_sampling_rate(tiny_qwen2_audio: Path, tmp_path: Path) -> None:
    """A stereo 48 kHz tone is mixed down and resampled to 16 kHz: the same tokens as the 16 kHz mono tone."""
    from tuneforge.errors import DataError

    tone(tmp_path / "a.wav", 440, seconds=1.0)
    tone(tmp_path / "b.flac", 440, seconds=1.0, rate=48000, channels=2)
    rows = [audio_row("<audio>Pitch?", "low", ["a.wav"]), audio_row("<audio>Pitch?", "low", ["b.flac"])]
    write_media_dataset(tmp_path, rows, kind="audios")
    splits, _ = prepare(tiny_qwen2_audio, tmp_path)
    assert splits.train[0]["input_ids"] == splits.train[1]["input_ids"]
    assert splits.train[0]["input_ids"].count(AUDIO) == 25
    with pytest.raises(DataError, match=r"audio_sampling_rate is 8000.*set `audio_sampling_rate: 16000`"):
        prepare(tiny_qwen2_audio, tmp_path, audio_sampling_rate=8000, cache_dir=str(tmp_path / "c2"))


def test_bad_audio_rows_are_reported_with_their_row_numbers(tiny_qwen2_audio: Path, tmp_path: Path) -> None:
    tone(tmp_path / "a.wav", 440)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    rows = [
        audio_row("<audio>Pitch?", "low", ["a.wav"]),
        audio_row("<audio>Pitch?", "low", ["missing.wav"]),
        audio_row("<audio>Pitch?", "low", ["broken.wav"]),
        audio_row("<audio><audio>Pitch?", "low", ["a.wav"]),
        audio_row("Pitch?", "low", ["a.wav"]),
    ]
    write_media_dataset(tmp_path, rows, kind="audios")
    splits, _ = prepare(tiny_qwen2_audio, tmp_path)
    problems = "\n".join(splits.stats.problems)
    assert splits.train.num_rows == 1
    assert "row 2" in problems and "missing.wav" in problems and "not found" in problems
    assert "row 3" in problems and "broken.wav" in problems and "cannot be read" in problems
    assert "row 4" in problems and "2 <audio> marks in the messages but 1 audios" in problems
    assert "row 5" in problems and "0 <audio> marks" in problems


def test_images_are_refused_by_the_audio_plugin(tiny_qwen2_audio: Path, tmp_path: Path) -> None:
    from media_helpers import square_image
    from tuneforge.errors import DataError

    square_image(tmp_path / "a.png", (0, 0, 255))
    write_media_dataset(tmp_path, [row("<image>Colour?", "blue", ["a.png"])])
    with pytest.raises(DataError, match="row 1: this model's media plugin takes audios, not images"):
        prepare(tiny_qwen2_audio, tmp_path)


def test_missing_audio_package_names_the_extra(
    tiny_qwen2_audio: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audio dataset needs the `audio` extra, and not Pillow (hidden too)."""
    from tuneforge.errors import ConfigError

    real = importlib.util.find_spec
    hidden = ("soundfile", "PIL")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name in hidden else real(name))
    tone(tmp_path / "a.wav", 440)
    write_media_dataset(tmp_path, [audio_row("<audio>Pitch?", "low", ["a.wav"])], kind="audios")
    with pytest.raises(ConfigError, match=r"`soundfile` package: pip install 'tuneforge\[audio\]'"):
        prepare(tiny_qwen2_audio, tmp_path)


def test_collator_carries_features_and_masks_audio_tokens(tiny_qwen2_audio: Path, tmp_path: Path) -> None:
    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import media_collator
    from tuneforge.models.loader import load_tokenizer

    tone(tmp_path / "a.wav", 440, seconds=1.0)
    tone(tmp_path / "b.wav", 2000, seconds=0.5)
    rows = [audio_row("<audio>Pitch?", "low", ["a.wav"])]
    rows.append(audio_row("<audio> then <audio>?", "both", ["b.wav", "a.wav"]))
    write_media_dataset(tmp_path, rows, kind="audios")
    splits, cfg = prepare(tiny_qwen2_audio, tmp_path)
    tokenizer = load_tokenizer(cfg)
    collate = media_collator(cfg.model, tokenizer, splits.template, PaddingCollator(tokenizer.pad_token_id))
    batch = collate([splits.train[0], splits.train[1]])
    assert batch["input_features"].shape == (3, 128, 3000)  # 30-second windows, as the processor pads
    assert batch["feature_attention_mask"].sum(-1).tolist() == [100, 50, 100]
    audio_tokens = batch["input_ids"] == AUDIO
    assert int(audio_tokens.sum()) == 25 + 12 + 25
    assert (batch["labels"][audio_tokens] == IGNORE).all()
    assert "mm_token_type_ids" not in batch


def test_frozen_parts_and_lora_targets_skip_the_audio_encoder(tiny_qwen2_audio: Path, tmp_path: Path) -> None:
    """As LLaMA-Factory: `freeze_vision_tower` freezes the audio encoder of an audio model."""
    import copy

    from tuneforge.models.adapters import apply_finetuning
    from tuneforge.models.loader import load_model, load_tokenizer

    base_cfg = tiny_config(tiny_qwen2_audio, tmp_path / "o")
    base = load_model(base_cfg, load_tokenizer(base_cfg), trainable=True)

    def trainable(**overrides: Any) -> set[str]:
        cfg = tiny_config(tiny_qwen2_audio, tmp_path / "o", **overrides)
        model = apply_finetuning(copy.deepcopy(base), cfg, trainable=True)
        return {name for name, p in model.named_parameters() if p.requires_grad}

    full = trainable(finetuning_type="full")
    assert any("language_model" in n for n in full)
    assert not any("audio_tower" in n or "multi_modal_projector" in n for n in full)
    full_open = trainable(finetuning_type="full", freeze_vision_tower=False, freeze_multi_modal_projector=False)
    assert any("audio_tower.layers" in n for n in full_open) and any("multi_modal_projector" in n for n in full_open)
    lora = trainable(finetuning_type="lora", lora_target="all")
    assert lora and all("lora_" in n and "language_model" in n for n in lora)
    lora_audio = trainable(finetuning_type="lora", lora_target="all", freeze_vision_tower=False)
    assert any("audio_tower.layers" in n and "lora_" in n for n in lora_audio)


def test_preview_shows_audio_token_runs_once_with_a_count() -> None:
    from tuneforge.data.preview import compact_runs

    text = "<|audio_bos|>" + "<|AUDIO|>" * 25 + "<|audio_eos|>Pitch?"
    assert compact_runs(text) == "<|audio_bos|><|AUDIO|>×25<|audio_eos|>Pitch?"
