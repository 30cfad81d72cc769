"""`tuneforge export` of a vision-language model: merged logits equal base + adapter on an image and text input,
the processor travels with the weights, and GGUF / GPTQ / Ollama say where they cannot take the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from export_helpers import export_cfg
from media_helpers import square_image
from tuneforge.errors import TuneforgeError
from tuneforge.export.runner import export_command

LM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@pytest.fixture(scope="module")
def adapter(tiny_qwen2_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA adapter (non-zero B) on the language model of the tiny Qwen2-VL."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(3)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=LM_TARGETS, init_lora_weights=False)
    out = tmp_path_factory.mktemp("vlm_lora") / "lora"
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def merged(tiny_qwen2_vl: Path, adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vlm_export") / "merged"
    return export_command(export_cfg(tiny_qwen2_vl, out, [adapter], template="qwen2_vl"))


def image_and_text_inputs(folder: Path, image: Path) -> dict[str, Any]:
    """Model inputs for one image and a question, built with plain transformers from the files in `folder`."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=[Image.open(image).convert("RGB")], return_tensors="pt")
    tokens = int(pixels["image_grid_thw"].prod()) // processor.merge_size**2
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text.replace("<|image_pad|>", "<|image_pad|>" * tokens), return_tensors="pt")["input_ids"]
    types = (ids == tokenizer.convert_tokens_to_ids("<|image_pad|>")).int()
    return {"input_ids": ids, "mm_token_type_ids": types, **pixels}


def test_merged_vlm_logits_equal_base_plus_adapter(
    tiny_qwen2_vl: Path, adapter: Path, merged: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    square_image(tmp_path / "red.png", (220, 30, 30), size=84)
    inputs = image_and_text_inputs(merged, tmp_path / "red.png")
    assert inputs["mm_token_type_ids"].sum() == 9  # 84 px: 6x6 patches -> 9 merged image tokens
    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, adapter).eval()
    exported = AutoModelForImageTextToText.from_pretrained(merged, dtype=torch.float32).eval()
    assert type(exported).__name__ == "Qwen2VLForConditionalGeneration"
    with torch.no_grad():
        want, got = reference(**inputs).logits, exported(**inputs).logits
        with reference.disable_adapter():
            plain = reference(**inputs).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (plain - want).abs().max() > 1e-3, "the adapter should change the model"


def test_merged_vlm_keeps_its_processor_and_chat_template(tiny_qwen2_vl: Path, merged: Path) -> None:
    import json

    for name in ("preprocessor_config.json", "video_preprocessor_config.json", "chat_template.jinja"):
        assert (merged / name).read_text() == (tiny_qwen2_vl / name).read_text(), name
    config = json.loads((merged / "config.json").read_text())
    assert config["architectures"] == ["Qwen2VLForConditionalGeneration"] and config["model_type"] == "qwen2_vl"
    modelfile = (merged / "Modelfile").read_text()
    assert modelfile.startswith("# tuneforge: Qwen2VLForConditionalGeneration is a multimodal model that Ollama")
    assert "--mmproj" in modelfile and "FROM .\n" in modelfile
    pytest.importorskip("torchvision", reason="transformers builds Qwen-VL processors only with torchvision")
    from transformers import AutoProcessor

    assert type(AutoProcessor.from_pretrained(merged)).__name__ == "Qwen2VLProcessor"


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"export_format": "gguf"}, r"--mmproj.*export_format: hf"),
        ({"export_quantization_bit": 4, "export_quantization_dataset": "c4.jsonl"}, "GPTQ export quantization of"),
    ],
)
def test_vlm_gguf_and_gptq_exports_are_refused_before_loading(
    tiny_qwen2_vl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: dict, match: str
) -> None:
    def no_load(cfg: Any) -> None:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr("tuneforge.export.merge.load_merged", no_load)
    with pytest.raises(TuneforgeError, match=match):
        export_command(export_cfg(tiny_qwen2_vl, tmp_path / "out", template="qwen2_vl", **keys))
    assert not (tmp_path / "out").exists()


def test_ollama_note_tells_which_vision_models_ollama_imports() -> None:
    from tuneforge.data.templates import get_template
    from tuneforge.export.ollama import modelfile_text
    from tuneforge.export.vision import ollama_note

    supported = ollama_note("Qwen2_5_VLForConditionalGeneration")
    assert "has a converter for this architecture, vision tower included" in supported
    assert "cannot import" in ollama_note("LlavaForConditionalGeneration")
    text = modelfile_text(get_template("qwen2_vl"), ".", ollama_note("Qwen3VLForConditionalGeneration"))
    assert text.startswith("# tuneforge: Qwen3VLForConditionalGeneration is a multimodal model: `ollama")
    assert 'TEMPLATE """' in text


@pytest.mark.slow
@pytest.mark.parametrize("finetuning_type", ["full", "freeze"])
def test_full_and_freeze_tuned_vlm_exports_reload(tiny_qwen2_vl: Path, tmp_path: Path, finetuning_type: str) -> None:
    """A fully or freeze-tuned model folder exports as the same model: equal logits on an image and text input,
    and the processor's chat template (which renders image parts) kept."""
    from transformers import AutoModelForImageTextToText

    from media_helpers import row, write_media_dataset
    from train_helpers import tiny_config
    from tuneforge.train.sft import run_sft

    for i, colour in enumerate([(220, 30, 30), (30, 50, 220)]):
        square_image(tmp_path / f"{i}.png", colour)
    write_media_dataset(tmp_path, [row("<image>Colour?", name, [f"{i}.png"]) for i, name in enumerate(["red", "blue"])])
    trained = tmp_path / "trained"
    options = {"template": "qwen2_vl", "dataset": "mm", "dataset_dir": str(tmp_path), "cache_dir": str(tmp_path / "c")}
    run_sft(tiny_config(tiny_qwen2_vl, trained, finetuning_type=finetuning_type, max_steps=2, **options))
    merged = export_command(export_cfg(trained, tmp_path / "export", template="qwen2_vl"))
    assert (merged / "chat_template.jinja").read_text() == (tiny_qwen2_vl / "chat_template.jinja").read_text()
    inputs = image_and_text_inputs(merged, tmp_path / "0.png")
    with torch.no_grad():
        want = AutoModelForImageTextToText.from_pretrained(trained, dtype=torch.float32).eval()(**inputs).logits
        got = AutoModelForImageTextToText.from_pretrained(merged, dtype=torch.float32).eval()(**inputs).logits
        base = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl, dtype=torch.float32).eval()(**inputs).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (base - want).abs().max() > 1e-4, "training should change the model"


def test_modelfile_without_a_template_still_carries_the_note(tmp_path: Path) -> None:
    from tuneforge.export.runner import write_modelfile
    from tuneforge.export.vision import ollama_note

    write_modelfile(None, tmp_path, ".", ollama_note("LlavaForConditionalGeneration"))
    lines = (tmp_path / "Modelfile").read_text().splitlines()
    assert lines[0].startswith("# tuneforge: LlavaForConditionalGeneration is a multimodal model that Ollama")
    assert lines[-1] == "FROM ."
