"""The web UI offers only choices that validate: a config built from every choice of every selector loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.webui import forms

CHOICES = [(field.key, choice) for field in forms.FIELDS if field.kind == "choice" for choice in field.choices]
# What the form must also hold for some choices to make sense (as a user fills it in).
NEEDS = {("stage", "ppo"): {"reward_model": "rm"}, ("stage", "grpo"): {"reward_model": "rm"}}
NEEDS |= {(key, c): {"use_badam": True, "finetuning_type": "full"} for key, c in CHOICES if key.startswith("badam_")}
NEEDS[("badam_switch_mode", "fixed")] |= {"badam_start_block": 0}


@pytest.mark.parametrize(("key", "choice"), CHOICES, ids=[f"{k}={c}" for k, c in CHOICES])
def test_every_choice_of_every_selector_validates(key: str, choice: str, tmp_path: Path) -> None:
    values = {f.key: forms.default_value(f) for f in forms.FIELDS}
    values.update(model_name_or_path="Qwen3-0.6B", dataset=["identity"], output_dir="out", template="qwen3")
    values.update({key: choice, **NEEDS.get((key, choice), {})})
    cfg = forms.validate(forms.form_to_config(values, tmp_path))
    if not key.startswith("ui_") and choice != forms.NONE:
        assert str(cfg.get(key)) == choice


def test_unsloth_is_not_offered() -> None:
    booster = next(f for f in forms.FIELDS if f.key == "ui_booster")
    assert "unsloth" not in booster.choices
