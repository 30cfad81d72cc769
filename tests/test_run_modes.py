"""Run modes as LLaMA-Factory has them: train / eval / predict in any combination, early stopping, throughput."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.train.modes import RunModes, run_modes


def _config(model: Path, shared: Path, out: Path, **values: Any) -> Any:
    from train_helpers import tiny_config

    data = {"template": "qwen3", "dataset_dir": str(shared / "lf-data"), "dataset": "identity", "max_samples": 16}
    sizes = {"cutoff_len": 64, "per_device_train_batch_size": 2, "per_device_eval_batch_size": 4}
    return tiny_config(model, out, **{**data, **sizes, **values})


@pytest.mark.parametrize(
    ("flags", "modes"),
    [
        ({"do_train": True}, RunModes(True, False, False)),
        ({"do_eval": True}, RunModes(False, True, False)),
        ({"do_train": True, "do_eval": True}, RunModes(True, False, False)),
        ({"do_eval": True, "do_predict": True, "predict_with_generate": True}, RunModes(False, True, True)),
        ({}, RunModes(True, False, False)),
    ],
)
def test_run_modes(flags: dict, modes: RunModes) -> None:
    assert run_modes(load_config(flags, paths=False)) == modes


def test_early_stopping_needs_best_model_tracking() -> None:
    with pytest.raises(ConfigError, match="early_stopping_steps"):
        load_config({"early_stopping_steps": 2, "eval_strategy": "steps", "val_size": 2}, paths=False)


@pytest.mark.slow
def test_eval_only_writes_eval_results_and_no_weights(tiny_qwen3: Path, shared_dir: Path, tmp_path: Path) -> None:
    from tuneforge.train.runner import run

    out = tmp_path / "eval"
    metrics = run(_config(tiny_qwen3, shared_dir, out, do_train=False, do_eval=True, eval_dataset="identity"))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_loss"] == pytest.approx(metrics["eval_loss"]) and results["eval_loss"] > 0
    assert not list(out.glob("*.safetensors")) and not (out / "trainer_log.jsonl").exists()


@pytest.mark.slow
def test_eval_only_on_a_trained_adapter(tiny_qwen3: Path, shared_dir: Path, tmp_path: Path) -> None:
    from tuneforge.train.runner import run

    trained = tmp_path / "adapter"
    run(_config(tiny_qwen3, shared_dir, trained, do_train=True, learning_rate=1e-2))
    base = run(_config(tiny_qwen3, shared_dir, tmp_path / "b", do_eval=True, eval_dataset="identity"))
    out = tmp_path / "eval"
    tuned = run(
        _config(tiny_qwen3, shared_dir, out, do_eval=True, eval_dataset="identity", adapter_name_or_path=str(trained))
    )
    assert tuned["eval_loss"] < base["eval_loss"]  # the adapter was applied (it learned the identity data)
    assert (out / "eval_results.json").exists() and not list(out.glob("*.safetensors"))


@pytest.mark.slow
def test_early_stopping_stops(tiny_qwen3: Path, shared_dir: Path, tmp_path: Path) -> None:
    """With `greater_is_better: true` on the falling eval loss, no evaluation improves on the first one."""
    from tuneforge.train.runner import run

    out = tmp_path / "es"
    values = {
        "do_train": True,
        "max_steps": 12,
        "val_size": 4,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": True,
        "early_stopping_steps": 2,
    }
    run(_config(tiny_qwen3, shared_dir, out, **values))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3  # best at step 1, no improvement at steps 2 and 3: stop


@pytest.mark.slow
def test_effective_tokens_per_second_is_reported(tiny_qwen3: Path, shared_dir: Path, tmp_path: Path) -> None:
    from tuneforge.train.runner import run

    out = tmp_path / "tps"
    metrics = run(_config(tiny_qwen3, shared_dir, out, include_effective_tokens_per_second=True))
    results = json.loads((out / "all_results.json").read_text())
    assert results["effective_tokens_per_sec"] == pytest.approx(metrics["effective_tokens_per_sec"])
    assert results["effective_tokens_per_sec"] > 0


@pytest.mark.slow
def test_neat_packing_final_eval_equals_in_loop_eval(tiny_qwen3: Path, shared_dir: Path, tmp_path: Path) -> None:
    from train_helpers import read_log
    from tuneforge.train.runner import run

    out = tmp_path / "neat"
    values = {"neat_packing": True, "val_size": 6, "eval_strategy": "steps", "eval_steps": 4}
    metrics = run(_config(tiny_qwen3, shared_dir, out, **values))
    in_loop = next(r["eval_loss"] for r in read_log(out) if "eval_loss" in r)  # the log ends with the final one
    assert metrics["eval_loss"] == pytest.approx(in_loop, abs=1e-6)  # was 11.9004 vs 11.8902 with the KV cache on


@pytest.mark.slow
def test_no_final_evaluation_without_do_eval(tiny_qwen3: Path, shared_dir: Path, tmp_path: Path) -> None:
    """As LLaMA-Factory: `val_size` alone holds rows out; evaluation needs `do_eval` or an `eval_strategy`."""
    from tuneforge.train.runner import run

    out = tmp_path / "noeval"
    metrics = run(_config(tiny_qwen3, shared_dir, out, do_train=True, val_size=4, max_steps=1))
    assert "eval_loss" not in metrics and not (out / "eval_results.json").exists()
    metrics = run(
        _config(
            tiny_qwen3, shared_dir, out, do_train=True, do_eval=True, val_size=4, max_steps=1, overwrite_output_dir=True
        )
    )
    assert metrics["eval_loss"] > 0 and (out / "eval_results.json").exists()


def test_fsdp_in_a_single_process_stops_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.train.modes import check_modes

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        check_modes(load_config({"fsdp": "full_shard"}, paths=False))
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_modes(load_config({"fsdp": "full_shard"}, paths=False))
