"""Multimodal (images): tiny Qwen2-VL models, LLaMA-Factory media rows, image tokens, collation, frozen parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from media_helpers import assert_matches_lf, row, square_image, write_media_dataset
from train_helpers import tiny_config

IGNORE = -100


def prepare(model: Path, folder: Path, work: Path | None = None, dataset: str = "mm", **overrides: Any) -> Any:
    """The tokenized splits of `dataset` in `folder` (and the config), with outputs and cache under `work`."""
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    work = work or folder
    options = {"template": "qwen2_vl", "dataset": dataset, "dataset_dir": str(folder), "cutoff_len": 512}
    options["cache_dir"] = str(work / "cache")
    cfg = tiny_config(model, work / "out", **{**options, **overrides})
    return prepare_dataset(cfg, load_tokenizer(cfg)), cfg


def test_tiny_qwen2_vl_loads_with_plain_transformers(tiny_qwen2_vl: Path) -> None:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl)
    processor = AutoImageProcessor.from_pretrained(tiny_qwen2_vl)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_vl)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert (processor.patch_size, processor.merge_size) == (14, 2)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n" in text
    pixels = processor(images=[Image.new("RGB", (56, 56), (255, 0, 0))], return_tensors="pt")
    grid = pixels["image_grid_thw"]
    assert grid.tolist() == [[1, 4, 4]]  # 56 px = 4 patches of 14 per side: 4 merged tokens
    text = text.replace("<|image_pad|>", "<|image_pad|>" * 4)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    types = (ids == model.config.image_token_id).int()
    with torch.no_grad():
        out = model(input_ids=ids, mm_token_type_ids=types, **pixels)
    assert out.logits.shape[:2] == ids.shape


def test_processor_folder_names_the_qwen2_vl_processor(tiny_qwen2_vl: Path) -> None:
    config = json.loads((tiny_qwen2_vl / "preprocessor_config.json").read_text())
    assert config["processor_class"] == "Qwen2VLProcessor"
    assert (tiny_qwen2_vl / "chat_template.jinja").is_file()
    pytest.importorskip("torchvision", reason="transformers builds Qwen-VL processors only with torchvision")
    from transformers import AutoProcessor

    assert type(AutoProcessor.from_pretrained(tiny_qwen2_vl)).__name__ == "Qwen2VLProcessor"


def test_mllm_demo_rows_get_the_processors_image_tokens(tiny_qwen2_vl: Path, shared_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoImageProcessor, AutoTokenizer

    splits, _ = prepare(tiny_qwen2_vl, shared_dir / "lf-data", tmp_path, dataset="mllm_demo")
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_vl)
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    first = splits.train[0]
    assert [Path(p).name for p in first["images"]] == ["1.jpg", "1.jpg"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in first["images"])
    processor = AutoImageProcessor.from_pretrained(tiny_qwen2_vl)
    grid = processor(images=[_lf_resized(first["images"][0])], return_tensors="pt")["image_grid_thw"][0]
    per_image = int(grid.prod()) // processor.merge_size**2
    assert first["input_ids"].count(pad) == 2 * per_image
    for token, label in zip(first["input_ids"], first["labels"], strict=True):
        if token == pad:
            assert label == IGNORE
    text = tokenizer.decode(first["input_ids"])
    assert text.count("<|vision_start|>") == 2 and "<image>" not in text


def _lf_resized(path: str) -> Any:
    """The image as LLaMA-Factory feeds it for the default image_max_pixels (768*768) and image_min_pixels (32*32)."""
    import math

    from PIL import Image

    image = Image.open(path).convert("RGB")
    if image.width * image.height > 768 * 768:
        factor = math.sqrt(768 * 768 / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    return image


def test_image_max_pixels_sizes_the_image_tokens(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    square_image(tmp_path / "big.png", (255, 0, 0), size=112)
    write_media_dataset(tmp_path, [row("<image>Colour?", "red", ["big.png"])])
    pad_counts = []
    for max_pixels in (112 * 112, 28 * 28):
        splits, _ = prepare(tiny_qwen2_vl, tmp_path, image_max_pixels=max_pixels, cache_dir=str(tmp_path / "c"))
        pad_counts.append(splits.train[0]["input_ids"].count(151655))
    assert pad_counts == [16, 1]  # 112 px: 8x8 patches -> 16 tokens; downscaled to 28 px: one token


def test_media_paths_resolve_against_media_dir(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    square_image(tmp_path / "media" / "a.png", (0, 255, 0))
    write_media_dataset(tmp_path, [row("<image>Colour?", "green", ["a.png"])])
    splits, _ = prepare(tiny_qwen2_vl, tmp_path, media_dir=str(tmp_path / "media"))
    assert splits.train[0]["images"] == [str(tmp_path / "media" / "a.png")]


def test_bad_media_rows_are_reported_with_their_row_numbers(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    square_image(tmp_path / "a.png", (0, 0, 255))
    rows = [
        row("<image>Colour?", "blue", ["a.png"]),
        row("<image>Colour?", "blue", ["missing.png"]),
        row("<image><image>Colour?", "blue", ["a.png"]),
        row("Colour?", "blue", ["a.png"]),
    ]
    write_media_dataset(tmp_path, rows)
    splits, _ = prepare(tiny_qwen2_vl, tmp_path)
    problems = "\n".join(splits.stats.problems)
    assert splits.train.num_rows == 1
    assert "row 2" in problems and "missing.png" in problems and "not found" in problems
    assert "row 3" in problems and "2 <image> marks in the messages but 1 images" in problems
    assert "row 4" in problems and "0 <image> marks" in problems


def test_a_cutoff_through_the_image_tokens_rejects_the_row(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """A 112-px image is 16 image tokens: cutoff_len 14 would keep a part of them (the model then stops at the
    first step), so the row is reported; a cutoff that keeps them all keeps the row."""
    from tuneforge.errors import DataError

    square_image(tmp_path / "big.png", (255, 0, 0), size=112)
    write_media_dataset(tmp_path, [row("<image>Colour?", "red", ["big.png"]), row("Hi <image>", "red", ["big.png"])])
    with pytest.raises(DataError, match=r"row 1: cutoff_len=14 cuts through the row.s media tokens \(4 of 16 kept\)"):
        prepare(tiny_qwen2_vl, tmp_path, cutoff_len=14, cache_dir=str(tmp_path / "c1"))
    splits, _ = prepare(tiny_qwen2_vl, tmp_path, cutoff_len=40, cache_dir=str(tmp_path / "c2"))
    assert splits.train.num_rows == 2 and all(ids.count(151655) == 16 for ids in splits.train["input_ids"])


def test_media_and_text_datasets_mix(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    square_image(tmp_path / "a.png", (0, 0, 255))
    write_media_dataset(tmp_path, [row("<image>Colour?", "blue", ["a.png"])])
    (tmp_path / "text.json").write_text(json.dumps([{"instruction": "Hi", "output": "Hello"}]))
    registry = json.loads((tmp_path / "dataset_info.json").read_text())
    registry["text"] = {"file_name": "text.json"}
    (tmp_path / "dataset_info.json").write_text(json.dumps(registry))
    splits, _ = prepare(tiny_qwen2_vl, tmp_path, dataset="mm,text")
    assert sorted(len(r) for r in splits.train["images"]) == [0, 1]


def test_strict_data_stops_at_a_missing_image(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from tuneforge.errors import DataError

    write_media_dataset(tmp_path, [row("<image>Colour?", "blue", ["gone.png"])])
    with pytest.raises(DataError, match=r"row 1.*gone\.png"):
        prepare(tiny_qwen2_vl, tmp_path, strict_data=True)


def test_media_with_a_text_template_or_packing_is_refused(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from tuneforge.errors import DataError

    square_image(tmp_path / "a.png", (0, 0, 255))
    write_media_dataset(tmp_path, [row("<image>Colour?", "blue", ["a.png"])])
    with pytest.raises(DataError, match="template 'qwen' is a text-only template"):
        prepare(tiny_qwen2_vl, tmp_path, template="qwen")
    with pytest.raises(DataError, match="plugin 'llava'"):
        prepare(tiny_qwen2_vl, tmp_path, template="llava")
    with pytest.raises(DataError, match="packing multimodal rows is not supported"):
        prepare(tiny_qwen2_vl, tmp_path, packing=True)


def test_collator_carries_pixels_grids_and_token_types(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import MediaCollator, media_collator
    from tuneforge.models.loader import load_tokenizer

    square_image(tmp_path / "a.png", (255, 0, 0))
    square_image(tmp_path / "b.png", (0, 255, 0), size=28)
    rows = [row("<image>Colour?", "red", ["a.png"]), row("Both <image> and <image>?", "yes", ["b.png", "a.png"])]
    write_media_dataset(tmp_path, rows)
    splits, cfg = prepare(tiny_qwen2_vl, tmp_path)
    tokenizer = load_tokenizer(cfg)
    collate = media_collator(cfg.model, tokenizer, splits.template, PaddingCollator(tokenizer.pad_token_id))
    assert isinstance(collate, MediaCollator)
    batch = collate([splits.train[0], splits.train[1]])
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 2, 2], [1, 4, 4]]
    assert batch["pixel_values"].shape == (16 + 4 + 16, 3 * 2 * 14 * 14)
    image_tokens = batch["input_ids"] == 151655
    assert batch["mm_token_type_ids"].bool().equal(image_tokens)
    assert int(image_tokens.sum()) == 4 + 1 + 4
    assert (batch["labels"][image_tokens] == IGNORE).all()


def test_frozen_parts_and_lora_targets_follow_the_freeze_settings(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    import copy

    from tuneforge.models.adapters import apply_finetuning
    from tuneforge.models.loader import load_model, load_tokenizer

    base_cfg = tiny_config(tiny_qwen2_vl, tmp_path / "o")
    base = load_model(base_cfg, load_tokenizer(base_cfg), trainable=True)  # loaded once, copied per case

    def trainable(**overrides: Any) -> set[str]:
        cfg = tiny_config(tiny_qwen2_vl, tmp_path / "o", **overrides)
        model = apply_finetuning(copy.deepcopy(base), cfg, trainable=True)
        return {name for name, p in model.named_parameters() if p.requires_grad}

    full = trainable(finetuning_type="full")
    assert any("language_model" in n for n in full)
    assert not any("visual" in n for n in full)  # tower and merger frozen by default, as LLaMA-Factory
    full_open = trainable(finetuning_type="full", freeze_vision_tower=False, freeze_multi_modal_projector=False)
    assert any("visual.blocks" in n for n in full_open) and any("visual.merger" in n for n in full_open)
    only_vision = trainable(finetuning_type="full", freeze_vision_tower=False, freeze_language_model=True)
    assert only_vision and all("visual" in n for n in only_vision) and not any("merger" in n for n in only_vision)
    lora = trainable(finetuning_type="lora", lora_target="all")
    assert lora and all("lora_" in n and "language_model" in n for n in lora)
    lora_vision = trainable(finetuning_type="lora", lora_target="all", freeze_vision_tower=False)
    assert any("visual.blocks" in n for n in lora_vision)
    assert not any("patch_embed" in n for n in lora_vision)
    freeze = trainable(finetuning_type="freeze", freeze_trainable_layers=1)
    assert freeze and all("language_model.layers.1." in n for n in freeze)
    freeze_projector = trainable(finetuning_type="freeze", freeze_multi_modal_projector=False)
    assert any("visual.merger" in n for n in freeze_projector)


def test_make_tiny_cli_builds_a_qwen2_5_vl(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tuneforge.cli import main_group

    out = tmp_path / "vl"
    result = CliRunner().invoke(main_group, ["make-tiny", "--arch", "qwen2_5_vl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote qwen2_5_vl model (2 layers, hidden 64, vision depth 1" in result.output
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2_5_vl"
    shutil.rmtree(out)


def test_mllm_demo_ids_and_labels_match_llamafactory(tiny_qwen2_vl: Path, shared_dir: Path, tmp_path: Path) -> None:
    """Fixture from scripts/lf_fixtures/encode_mllm_demo.py: LLaMA-Factory 0.9.5's qwen2_vl template and plugin on the
    same tiny processor. As README lists for text templates (tests/test_lf_templates.py), LF also trains the newline
    after each end-of-turn token and adds it after the last turn; everything else, image tokens included, is equal."""
    from transformers import AutoImageProcessor, AutoTokenizer

    fixture = json.loads((Path(__file__).parent / "fixtures" / "lf_mllm_demo_ids.json").read_text())
    processor = AutoImageProcessor.from_pretrained(tiny_qwen2_vl).to_dict()
    assert {k: processor[k] for k in fixture["image_processor"]} == fixture["image_processor"]
    splits, _ = prepare(tiny_qwen2_vl, shared_dir / "lf-data", tmp_path, dataset="mllm_demo", cutoff_len=2048)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_vl)
    assert_matches_lf(splits.train, fixture["rows"], tokenizer)


def test_qwen2_vl_record_renders_as_the_models_chat_template(tiny_qwen2_vl: Path) -> None:
    """The `qwen2_vl` record with image marks expanded once equals the processor's template over image parts."""
    from transformers import AutoTokenizer

    from tuneforge.data.templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_vl)
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    parts = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Kane."}]},
        {"role": "user", "content": [{"type": "text", "text": "And?"}, {"type": "image"}]},
    ]
    plain = [
        {"role": "user", "content": f"{image}Who?"},
        {"role": "assistant", "content": "Kane."},
        {"role": "user", "content": f"And?{image}"},
    ]
    official = tokenizer.apply_chat_template(parts, tokenize=False, add_generation_prompt=True)
    assert get_template("qwen2_vl", tokenizer).render(plain, add_generation_prompt=True) == official


def test_preview_shows_image_token_runs_once_with_a_count() -> None:
    from tuneforge.data.preview import compact_runs

    text = "<|vision_start|>" + "<|image_pad|>" * 12 + "<|vision_end|>Who?<|im_end|><|im_end|>"
    assert compact_runs(text) == "<|vision_start|><|image_pad|>×12<|vision_end|>Who?<|im_end|><|im_end|>"


def test_tiny_qwen3_vl_trains_on_the_same_image_rows(tmp_path: Path) -> None:
    """Qwen3-VL (16-pixel patches, deepstack, interleaved M-RoPE) takes image rows as Qwen2-VL does."""
    import torch
    from transformers import AutoModelForImageTextToText

    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import media_collator
    from tuneforge.data.templates import get_template
    from tuneforge.models.loader import load_tokenizer
    from tuneforge.models.tiny import make_tiny

    model_dir = make_tiny("qwen3_vl", tmp_path / "vl3")
    square_image(tmp_path / "a.png", (255, 0, 0), size=64)
    write_media_dataset(tmp_path, [row("<image>Colour?", "red", ["a.png"])])
    splits, cfg = prepare(model_dir, tmp_path, template="qwen3_vl_nothink")
    tokenizer = load_tokenizer(cfg)
    batch = media_collator(cfg.model, tokenizer, splits.template, PaddingCollator(tokenizer.pad_token_id))(
        [splits.train[0]]
    )
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]  # 64 px = 4 patches of 16 per side
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}]
    official = tokenizer.apply_chat_template(parts, tokenize=False, add_generation_prompt=True)
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    plain = [{"role": "user", "content": f"{image}Colour?"}]
    assert get_template("qwen3_vl_nothink", tokenizer).render(plain, add_generation_prompt=True) == official


def test_inference_loads_a_vision_language_model_as_training_does(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    from tuneforge.infer.loading import load_for_inference

    model, _ = load_for_inference(tiny_config(tiny_qwen2_vl, tmp_path / "o", template="qwen2_vl"))
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration" and not model.training


def test_parquet_rows_with_embedded_image_bytes_equal_rows_with_paths(
    tiny_qwen2_vl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Parquet / Hugging Face `Image` column holds {bytes, path}; the bytes are stored once, by content, and the
    row encodes exactly as the same image given by path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "store"))
    square_image(tmp_path / "a.png", (255, 0, 0), size=84)
    data = (tmp_path / "a.png").read_bytes()
    by_path = row("<image>Colour?", "red", ["a.png"])
    write_media_dataset(tmp_path, [by_path])
    embedded = {**by_path, "images": [{"bytes": data, "path": "ignored.png"}]}
    pq.write_table(pa.Table.from_pylist([embedded]), tmp_path / "emb.parquet")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    info["emb"] = {**info["mm"], "file_name": "emb.parquet"}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    plain, _ = prepare(tiny_qwen2_vl, tmp_path, tmp_path / "w1")
    stored, _ = prepare(tiny_qwen2_vl, tmp_path, tmp_path / "w2", dataset="emb")
    assert stored.train[0]["input_ids"] == plain.train[0]["input_ids"]
    (path,) = stored.train[0]["images"]
    assert Path(path).parent == tmp_path / "store" / "media" and Path(path).read_bytes() == data
