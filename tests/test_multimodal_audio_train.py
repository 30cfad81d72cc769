"""Training the tiny Qwen2-Audio (and the Qwen2.5-Omni thinker) end to end: LLaMA-Factory's audio, image and
video+audio demo sets, and a test that the audio matters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from media_helpers import api_answers, chat_answers, pitch_rows, train_pitch_model, write_media_dataset
from train_helpers import tiny_config

pytestmark = pytest.mark.slow


def train_demo(model: Path, shared_dir: Path, tmp_path: Path, template: str, dataset: str) -> Path:
    """Two LoRA steps on LLaMA-Factory demo sets; the adapter targets only the language model (towers frozen)."""
    from tuneforge.train.sft import run_sft

    out = tmp_path / "out"
    options = {"dataset_dir": str(shared_dir / "lf-data"), "cache_dir": str(tmp_path / "cache")}
    cfg = tiny_config(
        model, out, template=template, dataset=dataset, max_steps=2, per_device_train_batch_size=3, **options
    )
    assert run_sft(cfg)["train_loss"] > 0
    targets = json.loads((out / "adapter_config.json").read_text())["target_modules"]
    assert targets and all("language_model" in t for t in targets)
    return out


def test_mllm_audio_demo_trains_with_lora_on_the_language_model(
    tiny_qwen2_audio: Path, shared_dir: Path, tmp_path: Path
) -> None:
    out = train_demo(tiny_qwen2_audio, shared_dir, tmp_path, "qwen2_audio", "mllm_audio_demo")
    assert (out / "processor_config.json").is_file()  # the feature extractor travels with the adapter


def test_omni_thinker_trains_on_image_and_audio_demo_sets(
    tiny_qwen2_5_omni: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """mllm_demo and mllm_audio_demo mixed, on the tiny Qwen2.5-Omni thinker."""
    train_demo(tiny_qwen2_5_omni, shared_dir, tmp_path, "qwen2_omni", "mllm_demo,mllm_audio_demo")


def test_omni_thinker_trains_on_the_video_audio_demo_set(
    tiny_qwen2_5_omni: Path, shared_dir: Path, tmp_path: Path
) -> None:
    """mllm_video_audio_demo (a `<video>` and an `<audio>` per row) on the tiny Qwen2.5-Omni thinker."""
    train_demo(tiny_qwen2_5_omni, shared_dir, tmp_path, "qwen2_omni", "mllm_video_audio_demo")


def test_the_tone_pitch_is_learned_from_the_audio(tiny_qwen2_audio: Path, tmp_path: Path) -> None:
    """Only the audio tells the pitch: after training (audio encoder and projector frozen, as by default), held-out
    tones of both pitches are answered correctly through tuneforge's data path and collator and plain `generate`,
    the API (`input_audio` parts) and `tuneforge chat` (--audio and /audio)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import media_collator
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    out = train_pitch_model(tiny_qwen2_audio, tmp_path)
    write_media_dataset(tmp_path, pitch_rows(tmp_path, 8, seed=1), name="test", kind="audios")
    options = {"template": "qwen2_audio", "dataset_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    test_cfg = tiny_config(out, tmp_path / "unused", dataset="test", **options)
    tokenizer = load_tokenizer(test_cfg)
    splits = prepare_dataset(test_cfg, tokenizer, kind="unsupervised")
    left = PaddingCollator(tokenizer.pad_token_id, padding_side="left")
    collate = media_collator(test_cfg.model, tokenizer, splits.template, left)
    batch = collate([splits.train[i] for i in range(splits.train.num_rows)])
    expected = [tokenizer.decode(row["labels"], skip_special_tokens=True).strip() for row in splits.train]
    batch.pop("labels")
    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    answers = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert sorted(set(expected)) == ["high", "low"]
    assert [a.strip() for a in answers] == expected
    files = [Path(row["audios"][0]) for row in splits.train]
    question, greedy = "Is the tone high or low?", {"do_sample": False, "max_new_tokens": 3}
    assert api_answers(out, "qwen2_audio", "audios", files, question, greedy) == expected
    assert chat_answers(out, "qwen2_audio", "audios", files[:2], question, greedy) == expected[:2]
