"""The training profilers: LLaMA-Factory's `enable_torch_profiler` / `profiler_*` trace and `profile_modules` times."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerControl, TrainerState

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.train.module_times import MODULE_TIMES, ModuleTimes
from tuneforge.train.profiling import TraceCallback, profiler_callbacks


def _cfg(tmp_path: Path, **values: Any) -> Any:
    return load_config({"model_name_or_path": "m", "output_dir": str(tmp_path / "out"), **values})


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))


def _steps(callbacks: list, model: torch.nn.Module, steps: int, micro_batches: int = 1) -> TrainerState:
    """A stand-in training loop calling the callbacks as the Trainer does (step end after the accumulation)."""
    state, control, args = TrainerState(), TrainerControl(), None
    for callback in callbacks:
        callback.on_train_begin(args, state, control, model=model)
    for _ in range(steps):
        for _ in range(micro_batches):
            model(torch.randn(4, 8, requires_grad=True)).sum().backward()
        state.global_step += 1
        for callback in callbacks:
            callback.on_step_end(args, state, control)
        if state.global_step % 2 == 0:
            for callback in callbacks:
                callback.on_log(args, state, control, logs={})
    for callback in callbacks:
        callback.on_train_end(args, state, control)
    return state


def test_no_profiler_by_default(tmp_path: Path) -> None:
    assert profiler_callbacks(_cfg(tmp_path)) == []


def test_schedule_keys_without_the_switch_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tuneforge.train.profiling"):
        assert profiler_callbacks(_cfg(tmp_path, profiler_wait_steps=3, profiler_with_stack=False)) == []
    assert "`profiler_wait_steps`, `profiler_with_stack` have no effect without `enable_torch_profiler" in caplog.text


def test_switches_build_the_callbacks(tmp_path: Path) -> None:
    trace, times = profiler_callbacks(_cfg(tmp_path, enable_torch_profiler=True, profile_modules=" a.*, b ,"))
    assert isinstance(trace, TraceCallback) and trace.root == tmp_path / "out" / "profiler"
    assert isinstance(times, ModuleTimes) and times.patterns == ["a.*", "b"]
    [own] = profiler_callbacks(_cfg(tmp_path, enable_torch_profiler=True, profiler_output_dir=str(tmp_path / "t")))
    assert own.root == tmp_path / "t"


@pytest.mark.parametrize(("key", "value"), [("profiler_active_steps", 0), ("profiler_wait_steps", -1)])
def test_a_schedule_that_cannot_run_is_refused(tmp_path: Path, key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=key):
        _cfg(tmp_path, enable_torch_profiler=True, **{key: value})


def test_trace_written_per_rank_on_the_schedule(tmp_path: Path) -> None:
    settings = _cfg(tmp_path, enable_torch_profiler=True, profiler_repeat=2).profiler.model_dump()
    _steps([TraceCallback(tmp_path / "prof", settings)], _net(), steps=7)
    traces = sorted((tmp_path / "prof" / "rank_0").glob("*.pt.trace.json"))
    assert len(traces) == 2  # wait 1, warmup 1, active 1, twice: steps 3 and 6
    events = json.loads(traces[0].read_text())["traceEvents"]
    assert any("addmm" in str(event.get("name", "")) for event in events)


def test_too_short_a_run_says_why_there_is_no_trace(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _cfg(tmp_path, enable_torch_profiler=True, profiler_wait_steps=4).profiler.model_dump()
    with caplog.at_level(logging.WARNING, logger="tuneforge.train.profiling"):
        _steps([TraceCallback(tmp_path / "prof", settings)], _net(), steps=3)
    assert not list((tmp_path / "prof").rglob("*.json"))
    assert "training ran 3 step(s) and a first trace needs 6" in caplog.text


def test_module_times_count_every_micro_batch(tmp_path: Path) -> None:
    model, path = _net(), tmp_path / MODULE_TIMES
    times = ModuleTimes(["0", "2"], path)
    state = _steps([times], model, steps=5, micro_batches=3)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["steps"]) for r in records] == [(2, 2), (4, 2), (5, 1)]  # the last step is not lost
    assert state.global_step == 5
    for record in records:
        assert set(record["modules"]) == {"0", "2"}
        for row in record["modules"].values():
            assert row["forward_calls"] == row["backward_calls"] == 3
            assert row["forward_ms"] > 0 and row["backward_ms"] > 0
    assert not model[0]._forward_hooks and not model[0]._backward_hooks  # removed at the end


class _SlowBackward(torch.autograd.Function):
    """Identity whose backward takes at least 20 ms: a lower bound any honest backward time must show."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return grad


class _KeywordBlock(torch.nn.Module):
    """Called as attention modules are, with its input by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, *, hidden: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _SlowBackward.apply(self.linear(hidden)), None


@pytest.mark.parametrize("input_grad", [True, False], ids=["input-needs-grad", "only-weights-train"])
def test_backward_of_a_module_called_by_keyword_is_timed(tmp_path: Path, input_grad: bool) -> None:
    block, times = _KeywordBlock(), ModuleTimes(["block"], tmp_path / MODULE_TIMES)
    model = torch.nn.ModuleDict({"block": block})
    state, control = TrainerState(), TrainerControl()
    times.on_train_begin(None, state, control, model=model)
    for _ in range(2):
        out, _ = block(hidden=torch.randn(2, 8, requires_grad=input_grad))
        out.sum().backward()
    block.eval()
    block(hidden=torch.randn(2, 8))  # evaluation calls are not training time
    times.on_step_end(None, state, control)
    times.on_train_end(None, state, control)
    [record] = [json.loads(line) for line in (tmp_path / MODULE_TIMES).read_text().splitlines()]
    row = record["modules"]["block"]
    assert row["forward_calls"] == row["backward_calls"] == 2
    assert row["backward_ms"] >= 40  # two backwards of at least 20 ms each


def test_module_patterns_matching_nothing_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tuneforge.train.profiling"):
        _steps([ModuleTimes(["*.self_attn"], tmp_path / MODULE_TIMES)], _net(), steps=2)
    assert "no module name matches ['*.self_attn']" in caplog.text
    assert not (tmp_path / MODULE_TIMES).exists()


@pytest.mark.slow
def test_training_writes_a_trace_and_module_times(tiny_qwen2: Path, shared_dir: Path, tmp_path: Path) -> None:
    from train_helpers import tiny_config
    from tuneforge.train.runner import run

    out = tmp_path / "run"
    data = {"template": "qwen", "dataset_dir": str(shared_dir / "lf-data"), "dataset": "identity", "cutoff_len": 64}
    profiler = {"enable_torch_profiler": True, "profile_modules": "*.layers.0.self_attn,*.layers.*.mlp"}
    run(tiny_config(tiny_qwen2, out, **data, **profiler, max_steps=4, logging_steps=2))
    assert len(list((out / "profiler" / "rank_0").glob("*.pt.trace.json"))) == 1
    records = [json.loads(line) for line in (out / MODULE_TIMES).read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    names = set(records[0]["modules"])
    assert names == {f"base_model.model.model.layers.{n}" for n in ("0.self_attn", "0.mlp", "1.mlp")}
    for row in records[-1]["modules"].values():
        assert row["forward_calls"] == row["backward_calls"] == 1 and row["backward_ms"] > 0


@pytest.mark.slow
def test_ppo_loop_drives_the_profilers_too(tiny_qwen2: Path, tmp_path: Path) -> None:
    """PPO runs its own loop, not the Trainer's: the trace schedule and the module times follow its steps."""
    from test_train_resume import _ppo_config, _reward_folder
    from trajectory_cases import write_data
    from tuneforge.train import run_training

    data, reward = write_data(tmp_path / "data"), _reward_folder(tiny_qwen2, tmp_path / "reward")
    profiler = {"enable_torch_profiler": True, "profiler_warmup_steps": 0, "profile_modules": "*.layers.1.mlp"}
    run_training(_ppo_config(tiny_qwen2, tmp_path / "out", data, reward, **profiler))
    assert len(list((tmp_path / "out" / "profiler" / "rank_0").glob("*.pt.trace.json"))) == 1
    records = [json.loads(line) for line in (tmp_path / "out" / MODULE_TIMES).read_text().splitlines()]
    assert records and all(row["backward_ms"] > 0 for r in records for row in r["modules"].values())
