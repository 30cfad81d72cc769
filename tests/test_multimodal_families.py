"""LLaVA-1.5, LLaVA-NeXT, Gemma 3 and InternVL images: tiny models, image tokens as the processors count them,
LLaMA-Factory's ids for mllm_demo, pan-and-scan and tiling, and which parts train."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from media_helpers import row, square_image, write_media_dataset
from train_helpers import tiny_config

IGNORE = -100
FAMILIES = ("llava", "llava_next", "gemma3_vl", "intern_vl")
TEMPLATE = {"llava": "llava", "llava_next": "llava_next", "gemma3_vl": "gemma3", "intern_vl": "intern_vl"}
CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "gemma3_vl": "Gemma3ForConditionalGeneration",
    "intern_vl": "InternVLForConditionalGeneration",
}
IMAGE_PART = {
    "llava": "<image>",
    "llava_next": "<image>",
    "gemma3_vl": "<start_of_image>",
    "intern_vl": "<IMG_CONTEXT>",
}


@functools.cache
def tokenizer_of(model: Path) -> Any:
    """The run tokenizer of a tiny model (the same for every config here), loaded once."""
    from tuneforge.models.loader import load_tokenizer

    return load_tokenizer(tiny_config(model, model / "unused"))


def prepare(model: Path, folder: Path, template: str, work: Path | None = None, **overrides: Any) -> Any:
    """Tokenized splits of dataset `mm` (or `dataset=`) in `folder` with `template`, and the config; outputs and
    cache under `work` (default `folder`)."""
    from tuneforge.data.pipeline import prepare_dataset

    work = work or folder
    options = {"template": template, "dataset": "mm", "dataset_dir": str(folder), "cutoff_len": 2048}
    options |= {"cache_dir": str(work / "cache"), **overrides}
    cfg = tiny_config(model, work / "out", **options)
    return prepare_dataset(cfg, tokenizer_of(model)), cfg


def collate(cfg: Any, splits: Any, rows: list[int]) -> dict[str, Any]:
    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import media_collator

    tokenizer = tokenizer_of(Path(cfg.model.model_name_or_path))
    collator = media_collator(cfg.model, tokenizer, splits.template, PaddingCollator(tokenizer.pad_token_id))
    return collator([splits.train[i] for i in rows])


@pytest.mark.parametrize("arch", FAMILIES)
def test_tiny_family_loads_with_plain_transformers(arch: str, tiny_vlm: Any) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    folder = tiny_vlm(arch)
    assert type(AutoModelForImageTextToText.from_pretrained(folder)).__name__ == CLASSES[arch]
    assert "Pil" in type(AutoImageProcessor.from_pretrained(folder)).__name__  # no torchvision needed
    if arch != "intern_vl":  # loaded with AutoProcessor in the next test
        return
    tokenizer = AutoTokenizer.from_pretrained(folder)
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who?"}]}]
    assert "<IMG_CONTEXT>Who?" in tokenizer.apply_chat_template(parts, tokenize=False, add_generation_prompt=True)
    pytest.importorskip("torchvision", reason="transformers builds InternVL's processor only with torchvision")
    from transformers import AutoProcessor

    assert type(AutoProcessor.from_pretrained(folder)).__name__ == "InternVLProcessor"


@pytest.mark.parametrize("arch", ["llava", "llava_next", "gemma3_vl"])
def test_image_tokens_are_those_the_processor_puts(arch: str, tiny_vlm: Any, tmp_path: Path) -> None:
    """tuneforge's prompt ids equal the processor's own (its chat template over image parts, then
    `processor(text, images)`), for images of other sizes, at the start or end of a message and two in one
    (Gemma 3 trims the text, not the newlines around an image)."""
    from PIL import Image
    from transformers import AutoProcessor

    from tuneforge.data.media import plugin_for_run
    from tuneforge.data.templates import get_template

    folder = tiny_vlm(arch)
    processor = AutoProcessor.from_pretrained(folder)
    assert type(processor).__name__ == json.loads((folder / "processor_config.json").read_text())["processor_class"]
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who?"}]}]
    assert IMAGE_PART[arch] + "Who?" in processor.apply_chat_template(parts, tokenize=False)
    images = [Image.new("RGB", (100, 70), (200, 0, 0)), Image.new("RGB", (60, 150), (0, 0, 200))]
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
    template = get_template(TEMPLATE[arch], processor.tokenizer)
    plugin = plugin_for_run(template, tiny_config(folder, tmp_path / "o", template=TEMPLATE[arch]).model)
    for content in ("<image>Who?", "  Look: <image>", "<image> and <image>?"):
        count = content.count("<image>")
        message = [{"role": "user", "content": content.replace("<image>", IMAGE_PART[arch])}]
        official = processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        expected = processor(text=[official], images=images[:count], return_tensors="pt")["input_ids"][0].tolist()
        pending = [plugin.expand("images", str(tmp_path / f"{i}.png")) for i in range(count)]
        head, *rest = content.split("<image>")
        text = head + "".join(pending.pop(0) + tail for tail in rest)
        ours = template.render([{"role": "user", "content": text}], add_generation_prompt=True)
        assert processor.tokenizer(ours, add_special_tokens=False)["input_ids"] == expected, content


@pytest.mark.parametrize("arch", FAMILIES)
def test_mllm_demo_ids_and_labels_match_llamafactory(
    arch: str, tiny_vlm: Any, shared_dir: Path, tmp_path: Path
) -> None:
    """Fixtures from scripts/lf_fixtures/encode_mllm_demo.py (LLaMA-Factory 0.9.5's template and plugin on the same
    tiny processor). InternVL is equal; as README lists, llava/llava_next put a space after the system text, and
    gemma3 neither trains nor adds the newline after the last end of turn (tests/test_lf_differences.py)."""
    from transformers import AutoTokenizer

    fixture = json.loads((Path(__file__).parent / "fixtures" / f"lf_mllm_demo_ids_{TEMPLATE[arch]}.json").read_text())
    splits, _ = prepare(tiny_vlm(arch), shared_dir / "lf-data", TEMPLATE[arch], tmp_path, dataset="mllm_demo")
    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm(arch))
    assert splits.train.num_rows == len(fixture["rows"])
    for ours, theirs in zip(splits.train, fixture["rows"], strict=True):
        ids, labels = ours["input_ids"], ours["labels"]
        lf_ids, lf_labels = theirs["input_ids"], theirs["labels"]
        if arch in ("llava", "llava_next"):  # the one seam: "questions. USER:" where LF writes "questions.USER:"
            assert tokenizer.decode(ids) == tokenizer.decode(lf_ids).replace("questions.USER:", "questions. USER:", 1)
            assert labels == lf_labels
        elif arch == "gemma3_vl":
            assert ids == lf_ids[: len(ids)] and tokenizer.decode(lf_ids[len(ids) :]) == "\n"
            end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
            diffs = [i for i, (a, b) in enumerate(zip(labels, lf_labels, strict=False)) if a != b]
            assert all(labels[i] == IGNORE and lf_ids[i - 1] == end for i in diffs)
        else:
            assert (ids, labels) == (lf_ids, lf_labels)


def test_gemma3_pan_and_scan_adds_crops_as_llamafactory_writes_them(tiny_vlm: Any, tmp_path: Path) -> None:
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    Image.new("RGB", (1200, 300), (0, 160, 0)).save(tmp_path / "wide.png")  # 4:1 -> four 300-px crops
    Image.new("RGB", (300, 300), (0, 160, 0)).save(tmp_path / "square.png")  # no crops
    write_media_dataset(
        tmp_path, [row("<image>Colour?", "green", ["wide.png"]), row("<image>Hi", "hi", ["square.png"])]
    )
    splits, cfg = prepare(tiny_vlm("gemma3_vl"), tmp_path, "gemma3", image_do_pan_and_scan=True)
    wide, square = (splits.train[i]["input_ids"] for i in range(2))
    boi = 151665  # <start_of_image> in the tiny tokenizer
    assert (wide.count(boi), square.count(boi)) == (1 + 4, 1)
    batch = collate(cfg, splits, [0, 1])
    assert batch["pixel_values"].shape[0] == 1 + 4 + 1
    assert int(batch["token_type_ids"].sum()) == 4 * (1 + 4 + 1)  # 4 soft tokens per image or crop
    text = tokenizer_of(tiny_vlm("gemma3_vl")).decode(square)
    assert "Here is the original image \n\n<start_of_image>" in text
    assert "<end_of_image>\n\n and here are some crops to help you see better Hi" in text
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm("gemma3_vl"))
    assert model(**batch).loss.isfinite()


def test_intern_vl_crop_to_patches_tiles_each_image(tiny_vlm: Any, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (112, 56), (255, 0, 0)).save(tmp_path / "wide.png")  # 2x1 tiles of 56 px + a thumbnail
    write_media_dataset(tmp_path, [row("<image>Colour?", "red", ["wide.png"])])
    context = 151667  # <IMG_CONTEXT> in the tiny tokenizer
    counts = []
    for crop in (False, True):
        splits, cfg = prepare(tiny_vlm("intern_vl"), tmp_path, "intern_vl", crop_to_patches=crop)
        counts.append(splits.train[0]["input_ids"].count(context))
        assert collate(cfg, splits, [0])["pixel_values"].shape[0] == counts[-1] // 4
    assert counts == [4, 3 * 4]


@pytest.mark.parametrize("arch", FAMILIES)
def test_freeze_settings_and_lora_reach_the_right_parts(arch: str, tiny_vlm: Any, tmp_path: Path) -> None:
    """By default only the language model trains (LoRA there too); with the tower and projector unfrozen, one
    backward pass on an image row gives gradients in the vision tower, the projector and the language model."""
    import copy

    from tuneforge.models.adapters import apply_finetuning
    from tuneforge.models.loader import load_model

    square_image(tmp_path / "a.png", (0, 0, 255))
    write_media_dataset(tmp_path, [row("<image>Colour?", "blue", ["a.png"])])
    splits, cfg = prepare(tiny_vlm(arch), tmp_path, TEMPLATE[arch])
    base = load_model(cfg, tokenizer_of(tiny_vlm(arch)), trainable=True)

    def tuned(**overrides: Any) -> Any:
        options = {"template": TEMPLATE[arch], "lora_target": "all", **overrides}
        return apply_finetuning(
            copy.deepcopy(base), tiny_config(tiny_vlm(arch), tmp_path / "o", **options), trainable=True
        )

    lora = {n for n, p in tuned().named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n and "language_model" in n for n in lora)
    lora_tower = {n for n, p in tuned(freeze_vision_tower=False).named_parameters() if p.requires_grad}
    assert any("vision_tower" in n for n in lora_tower) and not any("projector" in n for n in lora_tower)
    full = {n for n, p in tuned(finetuning_type="full").named_parameters() if p.requires_grad}
    assert not any("vision_tower" in n or "projector" in n for n in full)
    model = tuned(finetuning_type="full", freeze_vision_tower=False, freeze_multi_modal_projector=False)
    model(**collate(cfg, splits, [0])).loss.backward()
    for part in ("vision_tower", "multi_modal_projector", "language_model"):
        grads = [p.grad for n, p in model.named_parameters() if part in n and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), part


def test_a_setting_for_another_family_warns_that_it_has_no_effect(
    tiny_vlm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tuneforge.data.mm import MediaSettings, build_plugin
    from tuneforge.data.templates import get_template

    with caplog.at_level("WARNING", logger="tuneforge.data"):
        build_plugin(get_template("llava"), str(tiny_vlm("llava")), MediaSettings(crop_to_patches=True))
    assert "`crop_to_patches` has no effect with media plugin 'llava': only intern_vl models read it." in caplog.text


@pytest.mark.parametrize("arch", FAMILIES)
def test_chat_with_an_image_runs_on_each_family(arch: str, tiny_vlm: Any, tmp_path: Path) -> None:
    """The inference engine takes an image on each family through the same plugin (Gemma 3's config, which
    transformers also maps for causal LM, counts as vision-language)."""
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    square_image(tmp_path / "a.png", (255, 0, 0), size=70)
    options = {"template": TEMPLATE[arch], "max_new_tokens": 2, "do_sample": False}
    engine = load_engine(load_config({"model_name_or_path": str(tiny_vlm(arch)), **options}))
    try:
        result = engine.chat([{"role": "user", "content": "Colour?"}], media={"images": [str(tmp_path / "a.png")]})
    finally:
        engine.close()
    assert result.completion_tokens == 2 and result.prompt_tokens > 16  # the image's tokens are in the prompt


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_gemma3_text_layers_alternate_sliding_and_full_for_any_depth(layers: int) -> None:
    from tuneforge.models.tiny_vlm_families import build_config, tokenizer

    config = build_config("gemma3_vl", tokenizer("gemma3_vl"), layers=layers)
    kinds = config.text_config.layer_types
    assert len(kinds) == config.text_config.num_hidden_layers == layers  # 3 layers used to fail validation
    assert kinds == ["sliding_attention", "full_attention", "sliding_attention"][:layers]
