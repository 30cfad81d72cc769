"""The web UI's Predict panel without a browser: the prediction config it starts, and the results it shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.webui import forms
from tuneforge.webui.monitor import finished

pytest.importorskip("gradio")

from tuneforge.webui.context import Context
from tuneforge.webui.predict_panel import predict_config, read_results


def _data(ctx: Context, **values: object) -> dict:
    """Gradio's `{component: value}` input dict, with the form's keys standing in for its components."""
    base = {f.key: forms.default_value(f) for f in forms.FIELDS}
    ctx.form = {key: key for key in [*base, "model_name_or_path", "dataset", "dataset_dir", "output_dir", "eval_steps"]}
    return {**base, **values}


def test_predict_config_uses_the_chosen_datasets_and_panel_settings(tmp_path: Path) -> None:
    ctx = Context.create(tmp_path)
    widgets = {"output_dir": "w_out", "max_samples": "w_n", "max_new_tokens": "w_new", "do_sample": "w_sample"}
    data = _data(ctx, model_name_or_path="Qwen3-0.6B", dataset=["train_set"], output_dir="saves/t", eval_steps=5)
    data.update(eval_widget=["alpaca_en_demo"], w_out="saves/p", w_n=4, w_new=8, w_sample=False)
    config = predict_config(ctx, data, "eval_widget", widgets)
    assert config["do_predict"] is True and config["predict_with_generate"] is True
    assert config["eval_dataset"] == "alpaca_en_demo" and "dataset" not in config
    assert config["max_samples"] == 4 and config["max_new_tokens"] == 8 and config["do_sample"] is False
    assert "eval_strategy" not in config and config["output_dir"] == str(tmp_path / "saves" / "p")
    assert forms.validate(config).training.do_train is False


def test_predict_config_falls_back_to_the_training_datasets(tmp_path: Path) -> None:
    ctx = Context.create(tmp_path)
    data = _data(ctx, model_name_or_path="Qwen3-0.6B", dataset=["train_set"])
    data.update(eval_widget=[], w_out="p")
    assert predict_config(ctx, data, "eval_widget", {"output_dir": "w_out"})["eval_dataset"] == "train_set"


def test_results_appear_once_the_metrics_are_written(tmp_path: Path) -> None:
    assert read_results(tmp_path) == (None, []) and not finished(tmp_path)
    rows = [{"prompt": f"p{i}", "predict": f"x{i}", "label": f"y{i}"} for i in range(7)]
    (tmp_path / "generated_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "predict_results.json").write_text(json.dumps({"predict_bleu-4": 1.5}))
    metrics, shown = read_results(tmp_path)
    assert metrics == {"predict_bleu-4": 1.5} and finished(tmp_path)
    assert shown[0] == ["p0", "x0", "y0"] and len(shown) == 5
