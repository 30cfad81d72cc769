"""`template: auto`: the template is picked from the model's own files and the registry, and the pick is logged."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.models.autotemplate import pick_template

MODELS = "fixtures/models"


@pytest.mark.parametrize(
    ("fixture", "expected"), [("tiny_qwen2", "qwen"), ("tiny_qwen3", "qwen3"), ("tiny_llama", "llama3")]
)
def test_tiny_models(request: pytest.FixtureRequest, fixture: str, expected: str) -> None:
    name, why = pick_template(str(request.getfixturevalue(fixture)))
    assert name == expected
    assert "chat template matches" in why


def test_config_auto_is_replaced_and_logged(tiny_qwen3: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        cfg = load_config({"model_name_or_path": str(tiny_qwen3), "template": "auto"})
    assert cfg.data.template == "qwen3"
    picks = [r.getMessage() for r in caplog.records if "template: auto picked" in r.getMessage()]
    assert len(picks) == 1 and "'qwen3'" in picks[0] and str(tiny_qwen3) in picks[0]


def test_registry_name_decides_without_files(tmp_path: Path) -> None:
    assert pick_template("Qwen/Qwen3-0.6B")[0] == "qwen3"  # not downloaded: the registry alone knows it
    assert pick_template("meta-llama/Llama-3.2-1B-Instruct")[0] == "llama3"
    folder = tmp_path / "Mistral-7B-Instruct-v0.3"  # a local copy named as on the hub
    folder.mkdir()
    assert pick_template(str(folder)) == (
        "mistral",
        "Mistral-7B-Instruct-v0.3 (mistralai/Mistral-7B-Instruct-v0.3) in the model registry",
    )


def _model_dir(tmp_path: Path, shared: Path, folder: str, model_type: str | None, chat_file: str | None = None) -> str:
    """A model folder (not named after the model) holding an official fixture's files."""
    out = tmp_path / "mymodel"
    out.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        if (shared / MODELS / folder / name).is_file():
            shutil.copy(shared / MODELS / folder / name, out / name)
    if model_type and not (out / "config.json").is_file():  # the official model_type, as the fixture README says
        (out / "config.json").write_text(json.dumps({"model_type": model_type}))
    if chat_file:
        shutil.copy(shared / MODELS / folder / chat_file, out / "chat_template.jinja")
    return str(out)


@pytest.mark.parametrize(
    ("folder", "model_type", "chat_file", "expected"),
    [
        ("qwen3-14b-mlx-4bit", None, None, "qwen3"),
        ("mistral-7b-instruct-v0.3", None, None, "mistral"),
        ("deepseek-r1-distill-qwen-32b", "qwen2", None, "deepseekr1"),
        ("glm-4-9b-chat", "chatglm", None, "glm4"),
        ("llama-3.2-3b-instruct", None, "chat_template.llama-cpp-fixture.jinja", "llama3"),
        ("gemma-2-2b-it", "gemma2", "chat_template.llama-cpp-fixture.jinja", "gemma2"),
        ("phi-3.5-mini-instruct", "phi3", "chat_template.llama-cpp-fixture.jinja", "phi"),
    ],
)
def test_official_files(
    tmp_path: Path, shared_dir: Path, folder: str, model_type: str | None, chat_file: str | None, expected: str
) -> None:
    assert pick_template(_model_dir(tmp_path, shared_dir, folder, model_type, chat_file))[0] == expected


def test_fixture_folder_name_is_matched_against_the_registry(shared_dir: Path) -> None:
    """chatglm3-6b has no chat template; its folder is named as its hub id, which the registry knows."""
    assert pick_template(str(shared_dir / MODELS / "chatglm3-6b"))[0] == "chatglm3"


def test_undecided_names_the_candidates(tmp_path: Path, shared_dir: Path) -> None:
    """config.json alone (model_type chatglm, no chat template) fits two registry templates."""
    with pytest.raises(ConfigError, match=r"cannot decide .*model_type 'chatglm'; candidates: glm4, chatglm3\)"):
        pick_template(_model_dir(tmp_path, shared_dir, "chatglm3-6b", None))


def test_chat_template_without_architecture_does_not_decide(tmp_path: Path, shared_dir: Path) -> None:
    model = _model_dir(tmp_path, shared_dir, "deepseek-r1-distill-qwen-32b", None)
    with pytest.raises(ConfigError, match="candidates: deepseek"):
        pick_template(model)


def test_config_error_is_reported_by_key(tmp_path: Path) -> None:
    empty = tmp_path / "mymodel"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"template.*auto cannot decide.*no config.json") as info:
        load_config({"model_name_or_path": str(empty), "template": "auto"})
    assert "unknown chat template" not in str(info.value)
    with pytest.raises(ConfigError, match="auto needs model_name_or_path"):
        load_config({"template": "auto"})


def test_web_ui_form_with_auto_template(tmp_path: Path) -> None:
    """The web UI's template box offers `auto`; the form's config then carries the picked template."""
    from tuneforge.webui import forms

    values = {f.key: forms.default_value(f) for f in forms.FIELDS}
    values.update(model_name_or_path="Qwen3-0.6B-Base", dataset=["identity"], output_dir="out", template="auto")
    config = forms.form_to_config(values, tmp_path)
    assert config["model_name_or_path"] == "Qwen/Qwen3-0.6B-Base" and config["template"] == "auto"
    assert forms.validate(config).data.template == "qwen3"


def test_hub_id_files_come_from_the_cache(tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id the registry does not know is decided by its files in the Hugging Face cache (nothing downloaded)."""
    from huggingface_hub import constants

    snapshot = tmp_path / "models--someone--my-llama" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_llama / name, snapshot / name)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert pick_template("someone/my-llama") == ("llama3", "model_type llama; its chat template matches")
    with pytest.raises(ConfigError, match=r"no config\.json"):
        pick_template("someone/not-cached")
