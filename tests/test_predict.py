"""Prediction with generation: text metrics against hand-computed values, config rules, batching, CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.eval.text_metrics import METRIC_NAMES, average_scores, require_metric_packages, row_scores
from tuneforge.train.predict import check_predict, generate_all, predict_config, predict_metrics

FIXTURE = Path(__file__).parent / "fixtures" / "lf_predict_metrics.json"


def test_metrics_equal_llamafactory_figures_on_fixture() -> None:
    """English and Chinese rows scored by LF 0.9.5's ComputeSimilarity (scripts/lf_metric_fixture.py)."""
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for row in fixture["rows"]:
        ours = row_scores(row["predict"], row["label"])
        for name, value in row["scores"].items():
            assert ours[name] == pytest.approx(value, abs=1e-6), (row["predict"], name)
    averaged = average_scores([r["predict"] for r in fixture["rows"]], [r["label"] for r in fixture["rows"]])
    for name, value in fixture["average"].items():
        assert averaged[name] == pytest.approx(value, abs=1e-6), name


def test_predict_metrics_names_and_throughput() -> None:
    metrics = predict_metrics([{"predict": "abcd", "label": "abcd", "prompt": "p"}], runtime=2.0)
    assert metrics["predict_bleu-4"] == 100.0 and metrics["predict_rouge-l"] == 100.0
    assert metrics["predict_runtime"] == 2.0 and metrics["predict_samples_per_second"] == 0.5
    assert average_scores([], []) == dict.fromkeys(METRIC_NAMES, 0.0)


def test_missing_metric_packages_stop_with_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jieba" else real(name, *a))
    with pytest.raises(TuneforgeError, match=r"jieba: pip install 'tuneforge\[metrics\]'"):
        require_metric_packages()


def _cfg(**keys: object):
    base = {"model_name_or_path": "org/model", "stage": "sft", "do_predict": True, "output_dir": "out"}
    return load_config({**base, **keys})


def test_check_predict_names_both_keys_when_generation_is_off() -> None:
    with pytest.raises(ConfigError, match="predict_with_generate"):
        _cfg()  # refused when the config loads
    cfg = _cfg(predict_with_generate=True)
    check_predict(cfg)
    cfg.training.predict_with_generate = False  # run_predict checks again (configs built in code)
    with pytest.raises(ConfigError, match="`do_predict: true` needs `predict_with_generate: true`"):
        check_predict(cfg)


def test_do_predict_is_for_sft_only() -> None:
    cfg = _cfg(predict_with_generate=True)
    cfg.method.stage = "pt"
    with pytest.raises(ConfigError, match="stage: sft"):
        check_predict(cfg)


def test_predict_after_training_uses_the_trained_adapter_or_model() -> None:
    keys = {"predict_with_generate": True, "do_train": True, "finetuning_type": "lora"}
    lora = predict_config(_cfg(**keys, adapter_name_or_path="org/a1,org/a2", eval_dataset="x", dataset="y"))
    assert lora.model.adapter_name_or_path == "org/a1,out"  # a2 was trained further into out
    assert lora.data.dataset is None
    new = predict_config(_cfg(**keys, adapter_name_or_path="org/a1", create_new_adapter=True))
    assert new.model.adapter_name_or_path == "org/a1,out"
    full = predict_config(_cfg(**{**keys, "finetuning_type": "full"}))
    assert full.model.model_name_or_path == "out"
    folder = predict_config(_cfg(**keys, adapter_name_or_path="org/a1", adapter_folder="sub", create_new_adapter=True))
    assert folder.model.adapters == ["org/a1/sub", "out"]  # the trained adapter sits in out, not out/sub
    alone = predict_config(_cfg(predict_with_generate=True, adapter_name_or_path="org/a1"))
    assert alone.model.adapter_name_or_path == "org/a1" and alone.model.model_name_or_path == "org/model"


class _FakeEngine:
    """Answers each prompt from a background thread, in reverse order, to check that order is kept."""

    def __init__(self) -> None:
        self.requests: list = []

    def sampling(self) -> str:
        return "params"

    def submit(self, ids, params, emit, media=None) -> None:
        self.requests.append((ids, params, emit))

    def run(self) -> None:
        from tuneforge.infer.requests import Finished, TextDelta

        while len(self.requests) < 3:
            pass
        for ids, _, emit in reversed(self.requests):
            emit(TextDelta(f"answer-{ids[0]}"))
            emit(TextDelta("!"))
            emit(Finished("stop", len(ids), 2))


def test_generate_all_queues_every_prompt_and_keeps_order() -> None:
    engine = _FakeEngine()
    worker = threading.Thread(target=engine.run)
    worker.start()
    seen: list[tuple[int, int]] = []
    texts = generate_all(engine, [[1], [2], [3]], progress=lambda done, total: seen.append((done, total)))
    worker.join()
    assert texts == ["answer-1!", "answer-2!", "answer-3!"]
    assert seen[-1] == (3, 3) and all(p == "params" for _, p, _ in engine.requests)


TRAIN_FIRST = {"do_train": True, "dataset": "alpaca_en_demo", "max_steps": 2, "disable_tqdm": True}


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, TRAIN_FIRST], ids=["predict-only", "train-then-predict"])
def test_cli_predicts_with_tiny_model(extra: dict, tiny_qwen2: Path, shared_dir: Path, tmp_path: Path) -> None:
    """`tuneforge train` with do_predict (alone, or after training a LoRA adapter) writes one jsonl row per
    sample and the metrics file."""
    pytest.importorskip("torch")
    out = tmp_path / "pred"
    keys = {
        "model_name_or_path": str(tiny_qwen2),
        "stage": "sft",
        "do_predict": True,
        "predict_with_generate": True,
        "finetuning_type": "lora",
        "template": "qwen",
        "eval_dataset": "alpaca_en_demo",
        "dataset_dir": str(shared_dir / "lf-data"),
        "max_samples": 4,
        "cutoff_len": 256,
        "max_new_tokens": 8,
        "do_sample": False,
        "per_device_eval_batch_size": 2,
        "output_dir": str(out),
        **extra,
    }
    config = tmp_path / "predict.yaml"
    config.write_text(json.dumps(keys), encoding="utf-8")
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", str(config)]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(set(r) == {"prompt", "predict", "label"} for r in rows)
    assert all("<|im_start|>assistant" in r["prompt"] and r["label"] for r in rows)
    metrics = json.loads((out / "predict_results.json").read_text())
    for name in ("runtime", "samples_per_second", "bleu-4", "rouge-1", "rouge-2", "rouge-l"):
        assert isinstance(metrics[f"predict_{name}"], float), name
    assert "generated_predictions.jsonl" in result.stdout
    assert (out / "adapter_model.safetensors").is_file() == bool(extra)
    if extra:
        assert f"Merged adapter {out}" in result.stderr  # prediction used the adapter just trained


def test_progress_log_appends_trainer_log_records(tmp_path: Path) -> None:
    from tuneforge.train.predict import ProgressLog

    log = ProgressLog(tmp_path)
    log(1, 4)
    log(4, 4)
    records = [json.loads(line) for line in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert [(r["current_steps"], r["total_steps"], r["percentage"]) for r in records] == [(1, 4, 25.0), (4, 4, 100.0)]
    assert records[-1]["remaining_time"] == "0:00:00"  # H:MM:SS, as the training log writes it
