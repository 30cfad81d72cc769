"""The torchrun launcher's decisions (fast): when to relaunch, with which arguments, and what a dead rank reports."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.train import launch
from tuneforge.train.dist import ddp_defaults


@pytest.mark.parametrize(
    ("env", "devices", "wanted"),
    [
        ({}, 0, False),
        ({}, 1, False),
        ({}, 2, True),
        ({"FORCE_TORCHRUN": "1"}, 0, True),
        ({"FORCE_TORCHRUN": "true"}, 1, True),
        ({"FORCE_TORCHRUN": "0"}, 1, False),
        ({"FORCE_TORCHRUN": "1", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, 2, False),  # torchrun / accelerate child
        ({"WORLD_SIZE": "4"}, 8, False),  # deepspeed launcher
        ({"USE_RAY": "1"}, 2, False),
    ],
)
def test_relaunch_rule(env: dict, devices: int, wanted: bool) -> None:
    assert launch.wants_torchrun(env, devices) is wanted


def test_plan_defaults_single_node() -> None:
    plan = launch.plan_launch({}, devices=4)
    assert (plan.nnodes, plan.node_rank, plan.nproc_per_node, plan.master_addr) == ("1", "0", "4", "127.0.0.1")
    assert 0 < int(plan.master_port) < 65536
    assert launch.plan_launch({}, devices=0).nproc_per_node == "1"  # CPU with FORCE_TORCHRUN: one process


def test_plan_honours_llamafactory_variables() -> None:
    env = {"NNODES": "2", "NODE_RANK": "1", "NPROC_PER_NODE": "8", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29555"}
    args = launch.plan_launch(env, devices=8).torchrun_args(["train", "cfg.yaml", "lr=1"])
    assert args[:5] == [
        "--nnodes=2",
        "--node_rank=1",
        "--nproc_per_node=8",
        "--master_addr=10.0.0.5",
        "--master_port=29555",
    ]
    assert args[-5:] == ["-m", "tuneforge.cli", "train", "cfg.yaml", "lr=1"]


def test_multi_node_without_master_port_is_refused() -> None:
    with pytest.raises(TuneforgeError, match="MASTER_PORT"):
        launch.plan_launch({"NNODES": "2", "MASTER_ADDR": "10.0.0.5"}, devices=1)
    with pytest.raises(TuneforgeError, match=r"NPROC_PER_NODE='two': give a whole number"):
        launch.plan_launch({"NPROC_PER_NODE": "two"}, devices=1)


def test_launch_prints_the_command_it_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    ran = []
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    monkeypatch.setenv("MASTER_PORT", "29511")
    for name in ("LOCAL_RANK", "WORLD_SIZE", "USE_RAY", "NNODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launch, "run_torchrun", lambda args, log_dir: ran.append(args))
    assert launch.launch_if_wanted(["train", "cfg.yaml"]) is True
    printed = capsys.readouterr().out.splitlines()[-1]
    assert printed.startswith("torchrun --nnodes=1 --node_rank=0 --nproc_per_node=2 --master_addr=127.0.0.1 ")
    assert printed.endswith("-m tuneforge.cli train cfg.yaml")
    assert printed == "torchrun " + " ".join(ran[0])


def test_dead_rank_message_names_rank_and_last_line(tmp_path: Path) -> None:
    rank_dir = tmp_path / "run-id" / "attempt_0" / "1"
    rank_dir.mkdir(parents=True)
    (rank_dir / "stderr.log").write_text("step 3\nRuntimeError: out of memory\n\n")
    failure = SimpleNamespace(exitcode=-9, local_rank=1)
    message = launch.failure_message(3, failure, str(tmp_path))
    assert "rank 3 (local rank 1) died (signal 9)" in message
    assert "Its last log line: RuntimeError: out of memory." in message
    assert str(rank_dir / "stderr.log") in message


def _cfg(finetuning_type: str) -> SimpleNamespace:
    return SimpleNamespace(method=SimpleNamespace(finetuning_type=finetuning_type))


@pytest.mark.parametrize(("kind", "expected"), [("lora", False), ("full", None), ("freeze", None)])
def test_ddp_unused_parameter_search_off_for_lora(monkeypatch: pytest.MonkeyPatch, kind: str, expected) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    values: dict = {"ddp_find_unused_parameters": None}
    ddp_defaults(_cfg(kind), values, cuda=False)
    assert values["ddp_find_unused_parameters"] is expected
    assert values["ddp_backend"] == "gloo"
    values = {"ddp_find_unused_parameters": True}
    ddp_defaults(_cfg(kind), values, cuda=True)  # the user's choice stands
    assert values["ddp_find_unused_parameters"] is True and "ddp_backend" not in values


def test_no_ddp_defaults_in_a_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    values: dict = {}
    ddp_defaults(_cfg("lora"), values, cuda=False)
    assert values == {}


def test_other_ranks_leave_the_output_folder_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 neither writes the resolved config nor trims the log nor clears half-written checkpoints."""
    from tuneforge.config import load_config
    from tuneforge.train import checkpoint as ckpt
    from tuneforge.train.recipe import save_resolved_config

    cfg = load_config({"model_name_or_path": str(tmp_path), "output_dir": str(tmp_path)})
    log = tmp_path / "trainer_log.jsonl"
    log.write_text('{"current_steps": 1}\n{"current_steps": 2}\n')
    (tmp_path / ckpt.STAGING).mkdir()
    monkeypatch.setenv("RANK", "1")
    assert not save_resolved_config(cfg, tmp_path).exists()
    ckpt.trim_log(log, 1)
    ckpt.clear_staging(tmp_path)
    assert len(log.read_text().splitlines()) == 2 and (tmp_path / ckpt.STAGING).exists()
    monkeypatch.setenv("RANK", "0")
    assert save_resolved_config(cfg, tmp_path).exists()
    ckpt.trim_log(log, 1)
    ckpt.clear_staging(tmp_path)
    assert len(log.read_text().splitlines()) == 1 and not (tmp_path / ckpt.STAGING).exists()
