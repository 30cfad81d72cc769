"""DeepSpeed / FSDP / Ray keys are checked before any work: shipped ZeRO configs validated by DeepSpeed itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.errors import ConfigError, NotBuiltError, TuneforgeError
from tuneforge.train import ds_config, launch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "deepspeed"


def _cfg(tmp_path: Path, **keys) -> object:
    return load_config({"model_name_or_path": str(tmp_path), "output_dir": str(tmp_path / "out"), **keys})


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_TORCHRUN", "LOCAL_RANK", "WORLD_SIZE", "USE_RAY", "NPROC_PER_NODE", "NNODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launch, "accelerator_count", lambda: 0)


@pytest.mark.parametrize("name", ds_config.STAGE_NAMES)
def test_shipped_zero_configs_pass_deepspeeds_own_validation(name: str, tmp_path: Path) -> None:
    pytest.importorskip("deepspeed")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
    shipped = ds_config.stage_file(name)
    assert (EXAMPLES / shipped.name).read_text() == shipped.read_text()  # examples/deepspeed/ is the same file
    cfg = _cfg(tmp_path, deepspeed=str(EXAMPLES / shipped.name), per_device_train_batch_size=2)
    filled = ds_config.check_deepspeed(cfg, world_size=4, cuda=True)
    assert filled["train_batch_size"] == 2 * 1 * 4
    assert filled["zero_optimization"]["stage"] == int(name[1])
    assert "auto" not in json.dumps(filled)
    assert ds_config.load_deepspeed(name) == json.loads(shipped.read_text())  # a stage name reads the same file


def test_invalid_deepspeed_key_is_refused_by_deepspeed(tmp_path: Path) -> None:
    pytest.importorskip("deepspeed")
    bad = {"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 3, "offload_everything": True}}
    cfg = _cfg(tmp_path, deepspeed=json.dumps(bad))
    with pytest.raises(ConfigError, match=r"not a valid DeepSpeed config.*offload_everything"):
        ds_config.check_deepspeed(cfg, world_size=2, cuda=True)


def test_deepspeed_without_cuda_stops_after_validation(tmp_path: Path) -> None:
    pytest.importorskip("deepspeed")
    with pytest.raises(TuneforgeError, match="valid, but DeepSpeed ZeRO trains on CUDA GPUs"):
        ds_config.check_deepspeed(_cfg(tmp_path, deepspeed="z2"), world_size=1, cuda=False)


def test_missing_deepspeed_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ds_config.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TuneforgeError, match=r"pip install 'tuneforge\[deepspeed\]'"):
        ds_config.check_deepspeed(_cfg(tmp_path, deepspeed="z3"), world_size=1, cuda=True)


def test_deepspeed_file_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file.*z0, z2, z3, z3_offload"):
        ds_config.load_deepspeed(str(tmp_path / "missing.json"))
    broken = tmp_path / "ds.json"
    broken.write_text('{"zero_optimization": {"stage": 3,}}')
    with pytest.raises(ConfigError, match=rf"{broken}: not valid JSON \(line 1"):
        ds_config.load_deepspeed(str(broken))


def test_unfillable_auto_is_named(tmp_path: Path) -> None:
    ds = {"zero_optimization": {"stage": 3, "sub_group_size": "auto"}}
    with pytest.raises(ConfigError, match=r"`zero_optimization\.sub_group_size` is `auto`"):
        ds_config.fill_auto(ds, _cfg(tmp_path), world_size=1, hidden_size=64)


def test_stage_name_becomes_the_shipped_file_for_the_trainer(single_process: None) -> None:
    from tuneforge.train.dist import ddp_defaults

    values = {"deepspeed": "z3_offload"}
    ddp_defaults(None, values, cuda=True)
    assert values["deepspeed"] == str(ds_config.stage_file("z3_offload"))


def test_single_process_fsdp_is_a_clear_message(tmp_path: Path, single_process: None) -> None:
    with pytest.raises(TuneforgeError, match=r"shards the model over several processes.*FORCE_TORCHRUN=1"):
        launch.preflight(_cfg(tmp_path, fsdp="full_shard"))


def test_use_ray_without_ray_names_the_extra_before_any_work(tmp_path: Path, single_process: None, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    monkeypatch.setenv("USE_RAY", "1")
    started = []
    monkeypatch.setattr(launch, "run_on_ray", lambda *args: started.append(args))
    with pytest.raises(ConfigError, match=r"`USE_RAY=1` needs the `ray` package: pip install 'tuneforge\[ray\]'"):
        launch.launch_if_wanted(["train"], _cfg(tmp_path), started.append)
    assert not started


def test_ray_settings_are_checked_before_launch(tmp_path: Path, single_process: None, monkeypatch, caplog) -> None:
    monkeypatch.setenv("USE_RAY", "1")
    with pytest.raises(ConfigError, match="`ray_init_kwargs`: not valid JSON"):
        launch.preflight(_cfg(tmp_path, ray_init_kwargs="{num_cpus"))
    with pytest.raises(ConfigError, match="`ray_num_workers: 0`"):
        launch.preflight(_cfg(tmp_path, ray_num_workers=0))
    with pytest.raises(TuneforgeError, match="shards the model over several processes"):
        launch.preflight(_cfg(tmp_path, fsdp="full_shard"))  # one Ray worker is one process
    launch.preflight(_cfg(tmp_path, ray_num_workers=2, fsdp="full_shard", master_port="29500"))
    assert "`master_addr` / `master_port` have no effect with USE_RAY=1" in caplog.text


def test_ray_keys_warn_without_use_ray(tmp_path: Path, single_process: None, caplog) -> None:
    launch.preflight(_cfg(tmp_path, ray_num_workers=4))
    assert "`ray_num_workers` / `ray_init_kwargs` have no effect without USE_RAY=1" in caplog.text


def test_config_master_address_stands_in_for_the_environment() -> None:
    plan = launch.plan_launch({"NNODES": "2"}, devices=1, master=("10.1.1.1", "29600"))
    assert (plan.master_addr, plan.master_port) == ("10.1.1.1", "29600")
    env = {"MASTER_ADDR": "10.2.2.2", "MASTER_PORT": "29700"}
    assert launch.plan_launch(env, devices=1, master=("10.1.1.1", "29600")).master_addr == "10.2.2.2"


def test_fsdp1_on_cpu_warns_it_runs_as_ddp(tmp_path: Path, single_process: None, monkeypatch, caplog) -> None:
    """accelerate enables FSDP1 only for GPU-like devices; on CPU its processes run plain DDP, which is said.
    FSDP2 (the default version) shards on CPU too (tests/test_dist_e2e.py), so it is not warned about."""
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    launch.preflight(_cfg(tmp_path, fsdp="full_shard", fsdp_config='{"fsdp_version": 1}'))
    assert "fsdp_version 1 has no effect on CPU" in caplog.text and "2 processes run plain DDP" in caplog.text
    caplog.clear()
    launch.preflight(_cfg(tmp_path, fsdp="full_shard", fsdp_config={"fsdp_version": 2}))
    launch.preflight(_cfg(tmp_path, fsdp="full_shard"))
    assert "no effect on CPU" not in caplog.text


def test_ppo_on_several_processes_is_refused(tmp_path: Path, single_process: None, monkeypatch) -> None:
    """PPO's own loop has no DDP: several ranks would each train alone and all write outputs."""
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    with pytest.raises(NotBuiltError, match=r"`stage: ppo` runs in one process only.*has 2"):
        launch.preflight(_cfg(tmp_path, stage="ppo", reward_model=str(tmp_path)))
