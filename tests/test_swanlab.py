"""SwanLab logging (`use_swanlab`): a local-mode run writes its losses to `swanlab_logdir` without touching the
network; a missing package stops the run before any work, naming the extra."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from train_helpers import tiny_config, tokenizer_of, train_data
from tuneforge.train.args import build_training_args

REAL_FIND_SPEC = importlib.util.find_spec


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any connection attempt fails and is recorded."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object, *args: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network disabled in this test")
        return REAL_CONNECT(self, address, *args)

    REAL_CONNECT = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def _logged(logdir: Path) -> dict[str, list[float]]:
    """Every metric SwanLab wrote under logdir: name -> values in step order."""
    (run,) = logdir.glob("run-*")
    found = {}
    for folder in (run / "logs").iterdir():
        summary = json.loads((folder / "_summary.json").read_text()) if (folder / "_summary.json").is_file() else {}
        rows = [json.loads(line) for file in sorted(folder.glob("*.log")) for line in file.read_text().splitlines()]
        found[summary.get("key", folder.name)] = [row["data"] for row in sorted(rows, key=lambda r: r["index"])]
    return found


@pytest.fixture
def swanlab_local(tmp_path: Path, no_network: list[object], monkeypatch: pytest.MonkeyPatch):
    """Settings for a local SwanLab run in tmp_path; yields its logdir, asserts no connection was tried."""
    import swanlab

    monkeypatch.setenv("SWANLAB_ROOT", str(tmp_path / "home"))  # SwanLab's own settings folder, not ~/.swanlab
    for probe in ("HARDWARE", "REQUIREMENTS", "CONDA", "GIT", "MONITOR"):  # environment probes: slow, not under test
        monkeypatch.setenv(f"SWANLAB_PROBE_{probe}", "false")
    logdir = tmp_path / "swanlog"
    settings = {"use_swanlab": True, "swanlab_mode": "local", "swanlab_logdir": str(logdir)}
    yield logdir, settings
    try:
        swanlab.get_run()
    except RuntimeError:  # finished by the test
        pass
    else:
        swanlab.finish()  # a failed test must not leave its run open for the next one
    assert not no_network


def _finish() -> None:
    import swanlab

    swanlab.finish()  # the run stays open for the final evaluation's metrics; finishing flushes its files


@pytest.mark.slow
def test_local_run_writes_the_losses_to_the_logdir(tiny_qwen2: Path, tmp_path: Path, swanlab_local) -> None:
    from tuneforge.train.sft import run_sft

    logdir, settings = swanlab_local
    tokenizer = tokenizer_of(tiny_qwen2)
    cfg = tiny_config(
        tiny_qwen2, tmp_path / "out", swanlab_project="tests", swanlab_run_name="tiny", report_to="swanlab",
        max_steps=3, **settings,
    )  # fmt: skip
    run_sft(cfg, train_data(tokenizer, 4), tokenizer)
    _finish()
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    losses = [row["loss"] for row in state["log_history"] if "loss" in row]
    logged = _logged(logdir)
    assert len(losses) == 3
    assert any(values == pytest.approx(losses) for values in logged.values()), logged
    (record,) = logdir.glob("run-*/run-*.swanlab")
    assert b"train/loss" in record.read_bytes()  # the metric names live in the run record
    assert json.loads((tmp_path / "out" / "swanlab_public_config.json").read_text())["mode"]


@pytest.mark.slow
def test_ppo_logs_to_swanlab_too(tiny_qwen2: Path, tmp_path: Path, swanlab_local) -> None:
    """PPO runs its own loop; its logged losses reach SwanLab as the Trainer stages' do."""
    from test_train_resume import _ppo_config, _reward_folder
    from trajectory_cases import write_data
    from tuneforge.train import run_training

    logdir, settings = swanlab_local
    data, reward = write_data(tmp_path / "data"), _reward_folder(tiny_qwen2, tmp_path / "reward")
    run_training(_ppo_config(tiny_qwen2, tmp_path / "out", data, reward, **settings))
    _finish()
    rows = [json.loads(line) for line in (tmp_path / "out" / "trainer_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert losses and any(values == pytest.approx(losses) for values in _logged(logdir).values())


def test_report_to_swanlab_is_left_to_the_callback(tmp_path: Path) -> None:
    """As LLaMA-Factory: with use_swanlab, transformers' own SwanLab reporter is dropped (no double logging)."""
    cfg = tiny_config(tmp_path, tmp_path, use_swanlab=True, report_to="swanlab,tensorboard")
    args, _ = build_training_args(cfg, cuda=False)
    assert args.report_to == ["tensorboard"]


def test_missing_swanlab_stops_before_any_work(tiny_qwen2: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from tuneforge.cli import main

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name.split(".")[0] == "swanlab" else REAL_FIND_SPEC(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as stop:
        main(["train", f"model_name_or_path={tiny_qwen2}", f"output_dir={out}", "dataset=identity", "use_swanlab=true"])
    assert stop.value.code != 0
    assert "pip install 'tuneforge[swanlab]'" in capsys.readouterr().err
    assert not out.exists()


def test_api_key_and_lark_webhook_are_handed_to_swanlab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`swanlab_api_key` logs in; the Lark webhook becomes a notification plugin of the run SwanLab starts."""
    from types import SimpleNamespace

    import swanlab
    from swanlab.plugin.notification import LarkCallback

    from tuneforge.train.swanlab_log import swanlab_callbacks

    calls: dict[str, object] = {}
    run = SimpleNamespace(id="r1", name="tiny", mode="cloud", config=SimpleNamespace(update=lambda values: None))

    def init(**kwargs: object) -> object:
        calls["init"] = kwargs
        return run

    def get_run() -> object:
        if "init" not in calls:
            raise RuntimeError("no run")
        return run

    monkeypatch.setattr(swanlab, "login", lambda api_key: calls.setdefault("login", api_key))
    monkeypatch.setattr(swanlab, "init", init)
    monkeypatch.setattr(swanlab, "get_run", get_run)
    cfg = tiny_config(
        tmp_path, tmp_path, use_swanlab=True, swanlab_api_key="k-123", swanlab_workspace="team",
        swanlab_lark_webhook_url="https://lark.invalid/hook", swanlab_lark_secret="s",
    )  # fmt: skip
    (callback,) = swanlab_callbacks(cfg)
    args, _ = build_training_args(cfg, cuda=False)
    callback.setup(args, SimpleNamespace(is_world_process_zero=True, global_step=0), None)
    assert calls["login"] == "k-123"
    started = calls["init"]
    assert started["workspace"] == "team" and started["mode"] == "cloud" and started["project"] == "llamafactory"
    assert any(isinstance(c, LarkCallback) for c in started["callbacks"])
    assert json.loads((tmp_path / "swanlab_public_config.json").read_text())["id"] == "r1"
