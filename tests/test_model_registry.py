"""The model registry (models/registry.yaml): its data, its filters and the `tuneforge models` verb."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.data.templates import list_templates
from tuneforge.errors import ConfigError
from tuneforge.models.registry import all_models, find_model, parse_size, select_models
from tuneforge.webui.modelbar import picker_choices, suggest_template

LF_CONSTANTS = Path("/work/lfvenv/lib/python3.11/site-packages/llamafactory/extras/constants.py")
ROOT = Path(__file__).resolve().parents[1]


def test_every_text_template_of_the_registry_is_a_tuneforge_template() -> None:
    known = set(list_templates())
    missing = sorted({e.template for e in all_models() if not e.multimodal and e.template not in known})
    assert not missing, f"text families name templates tuneforge lacks: {missing}"
    assert "default" in known  # what a base model gets in the web UI, as in LLaMA-Factory


def test_names_are_unique_and_fields_are_filled() -> None:
    names = [e.name for e in all_models()]
    assert len(names) == len(set(names))
    for entry in all_models():
        assert "/" in entry.hub and entry.architecture and entry.template and entry.family, entry
        if entry.size:
            assert entry.billions and entry.billions > 0, entry


def test_registry_covers_llamafactory_0_9_5() -> None:
    """Every model LLaMA-Factory 0.9.5 lists, with its hub id, template and multimodal mark (needs the
    reference install, which is not in CI; the counts below hold without it)."""
    families = {e.family for e in all_models()}
    assert len(families) >= 126 and len(all_models()) >= 628
    if not LF_CONSTANTS.is_file():
        pytest.skip("the LLaMA-Factory 0.9.5 reference install is absent")
    sys.path.insert(0, str(ROOT / "scripts" / "lf_fixtures"))
    try:
        from model_registry import groups  # the generator's parser of register_model_group calls
    finally:
        sys.path.pop(0)
    for group in groups(LF_CONSTANTS):
        for name, hub in group["models"].items():
            entry = find_model(name)
            assert entry is not None and entry.name == name, name
            assert (entry.hub, entry.template, entry.multimodal) == (
                hub,
                group["template"] or "default",
                group["multimodal"],
            ), name


def test_qwen3_0_6b_facts() -> None:
    entry = find_model("Qwen3-0.6B")  # the hub name finds LLaMA-Factory's "Qwen3-0.6B-Thinking"
    assert entry is not None
    assert (entry.name, entry.hub, entry.template, entry.architecture, entry.size) == (
        "Qwen3-0.6B-Thinking",
        "Qwen/Qwen3-0.6B",
        "qwen3",
        "qwen3",
        "0.6B",
    )
    assert find_model("qwen/qwen3-0.6b") == entry and find_model("nonexistent/model") is None


@pytest.mark.parametrize(("text", "billions"), [("7B", 7.0), ("0.5B", 0.5), ("270M", 0.27), ("8x7B", 56.0)])
def test_parse_size(text: str, billions: float) -> None:
    assert parse_size(text) == pytest.approx(billions)


def test_filters() -> None:
    small_qwen3 = select_models(family="qwen3", size="0.5B-1B")
    assert small_qwen3 and all("Qwen3" in e.family and 0.5 <= e.billions <= 1 for e in small_qwen3)
    assert {e.template for e in select_models(template="llama3")} == {"llama3"}
    assert all(e.architecture == "gemma2" for e in select_models(architecture="gemma2"))
    assert [e.name for e in select_models("Qwen/Qwen3-0.6B-Base")] == ["Qwen3-0.6B-Base"]
    assert select_models(family="no-such-family") == []
    with pytest.raises(ConfigError, match="--size"):
        select_models(size="big")


def test_base_models_get_default_in_the_picker_as_in_llamafactory() -> None:
    base = find_model("Qwen3-0.6B-Base")
    assert base is not None and base.base and base.template == "qwen3" and base.ui_template == "default"
    assert suggest_template("Qwen3-0.6B-Thinking") == ("qwen3", [])
    assert suggest_template("Qwen3-0.6B-Base") == ("default", [])


def test_picker_lists_text_models_and_trainable_multimodal_ones() -> None:
    choices = picker_choices()
    assert "Qwen3-0.6B-Thinking" in choices and "Llama-3.2-1B-Instruct" in choices
    assert ("Qwen2-VL-7B-Instruct (multimodal: images, videos)", "Qwen2-VL-7B-Instruct") in choices
    assert not any("Gemma-3n" in str(choice) for choice in choices)  # its media plugin is not built yet


def _models(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "models", *args], capture_output=True, text=True, timeout=120
    )


def test_models_verb_filters_and_says_when_nothing_matches() -> None:
    out = _models("--family", "qwen3", "--size", "0.6B")
    assert out.returncode == 0, out.stderr
    assert "Qwen/Qwen3-0.6B " in out.stdout and "Qwen/Qwen3-0.6B-Base" in out.stdout
    assert "Llama" not in out.stdout
    out = _models("--family", "nosuch")
    assert out.returncode == 2
    assert "no model in the registry matches family=nosuch" in out.stderr and "Traceback" not in out.stderr


def test_models_table_says_which_media_each_multimodal_family_takes() -> None:
    from tuneforge.models.registry import all_models, models_table

    lines = models_table(all_models()).splitlines()
    qwen2_vl = next(line for line in lines if line.startswith("Qwen2-VL-7B-Instruct "))
    assert qwen2_vl.endswith("multimodal: images, videos")
    audio = next(line for line in lines if line.startswith("Qwen2-Audio-7B-Instruct "))
    assert audio.endswith("multimodal: audios")
    assert not any("not trainable" in line for line in lines)
