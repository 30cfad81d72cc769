"""Fast tests of the web UI's logic without a browser: command generation, job registry, path jail, dataset
registration, locales, VS Code launch entries, and the trainer's clean stop on a signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneforge.errors import ConfigError, DataError
from tuneforge.webui import forms
from tuneforge.webui.jobs import JobConflictError, JobRegistry
from tuneforge.webui.locale import LOCALE_DIR, strings
from tuneforge.webui.monitor import loss_rows, progress
from tuneforge.webui.paths import PathJail, PathOutsideRootError
from tuneforge.webui.vscode import debug_config_command


def _form(**values):
    base = {f.key: forms.default_value(f) for f in forms.FIELDS}
    return {**base, **values}


# --- command generation -----------------------------------------------------------------------------------


def test_form_becomes_a_valid_train_config(tmp_path: Path) -> None:
    values = _form(
        model_name_or_path="Qwen3-0.6B",
        dataset=["a", "b"],
        output_dir="out",
        max_steps=7,
        ui_quantization_bit="4",
        ui_booster="liger_kernel",
        ui_compute_type="bf16",
    )
    config = forms.form_to_config(values, tmp_path)
    assert config["model_name_or_path"] == "Qwen/Qwen3-0.6B"  # a known name becomes its Hub id
    assert config["dataset"] == "a,b" and config["max_steps"] == 7
    assert config["quantization_bit"] == 4 and config["enable_liger_kernel"] is True and config["bf16"] is True
    assert config["report_to"] == "none" and config["plot_loss"] is True
    assert "rope_scaling" not in config  # "none" means unset
    cfg = forms.validate(config)
    assert cfg.training.max_steps == 7 and cfg.method.finetuning_type == "lora"


@pytest.mark.parametrize("name", ["galore", "apollo", "badam"])
def test_memory_saving_optimizers_from_the_form(name: str, tmp_path: Path) -> None:
    """GaLore, APOLLO and BAdam have their groups, as in LLaMA-Factory's UI; their settings count only when on."""
    base = _form(model_name_or_path="Qwen3-0.6B", dataset=["x"], output_dir="o", finetuning_type="full")
    assert not any(key.startswith((name, f"use_{name}")) for key in forms.form_to_config(base, tmp_path))
    setting = "badam_switch_interval" if name == "badam" else f"{name}_rank"
    config = forms.form_to_config({**base, f"use_{name}": True, setting: 8}, tmp_path)
    assert config[f"use_{name}"] is True and config[setting] == 8
    cfg = forms.validate(config)
    assert cfg.get(setting) == 8 and cfg.get(f"use_{name}") is True
    back = forms.config_to_form(yaml.safe_load(forms.to_yaml(config)))
    assert back[f"use_{name}"] is True and back[setting] == 8


def test_bad_value_is_a_config_error_naming_the_key() -> None:
    config = forms.form_to_config(_form(model_name_or_path="m", output_dir="o", stage="nope"))
    with pytest.raises(ConfigError, match="stage"):
        forms.validate(config)


def test_saved_config_loads_back_into_the_form(tmp_path: Path) -> None:
    values = _form(
        model_name_or_path="/m",
        dataset=["x"],
        output_dir="o",
        learning_rate=0.01,
        ui_booster="liger_kernel",
        ui_deepspeed_stage="2",
    )
    config = forms.form_to_config(values, tmp_path)
    assert Path(config["deepspeed"]).is_file()
    back = forms.config_to_form(yaml.safe_load(forms.to_yaml(config)))
    assert back["dataset"] == ["x"] and back["learning_rate"] == 0.01 and back["ui_booster"] == "liger_kernel"
    assert forms.form_to_config({**values, **back}, tmp_path) == config


def test_eval_datasets_schedule_evaluation() -> None:
    config = forms.form_to_config(
        _form(model_name_or_path="m", output_dir="o", dataset=["a"], eval_dataset=["b"], eval_steps=5)
    )
    assert config["eval_dataset"] == "b" and config["eval_strategy"] == "steps" and config["eval_steps"] == 5
    forms.validate(config)


def test_context_config_jails_paths(tmp_path: Path) -> None:
    from tuneforge.webui.context import Context

    ctx = Context.create(tmp_path)
    config = ctx.config(_form(model_name_or_path="Qwen3-0.6B", output_dir="runs/a", dataset_dir="data"))
    assert config["output_dir"] == str(tmp_path / "runs" / "a")
    with pytest.raises(PathOutsideRootError):
        ctx.config(_form(model_name_or_path="Qwen3-0.6B", output_dir="../elsewhere"))


# --- path jail ----------------------------------------------------------------------------------------------


def test_jail_refuses_dotdot_absolute_and_symlink_escapes(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "data").mkdir(parents=True)
    outside.mkdir()
    (root / "link").symlink_to(outside)
    jail = PathJail(root)
    assert jail.resolve("data") == root / "data"
    assert jail.resolve(str(root / "data" / ".." / "data")) == root / "data"
    for bad in ("../outside", str(outside), "data/../../outside", "link", "link/file.json", "/etc/passwd", ""):
        with pytest.raises(PathOutsideRootError):
            jail.resolve(bad)


def test_jail_with_two_roots(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    jail = PathJail(a, b)
    assert jail.resolve(str(b / "m")) == b / "m" and jail.resolve("x") == a / "x"
    with pytest.raises(PathOutsideRootError):
        jail.resolve(str(tmp_path / "c"))


# --- job registry --------------------------------------------------------------------------------------------


def _sleeper(registry: JobRegistry, monkeypatch: pytest.MonkeyPatch, out: Path):
    """A job whose process is a short sleep carrying the config path (stands in for `tuneforge train`)."""
    import tuneforge.webui.jobs as jobs

    monkeypatch.setattr(
        jobs, "train_command", lambda cfg: [sys.executable, "-c", "import time; time.sleep(30)", str(cfg)]
    )
    return registry.start({"output_dir": str(out), "model_name_or_path": "m"})


def test_registry_reattaches_and_refuses_a_shared_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = JobRegistry(tmp_path / "state")
    job = _sleeper(registry, monkeypatch, tmp_path / "out")
    try:
        assert yaml.safe_load(Path(job.config_path).read_text())["output_dir"] == str(tmp_path / "out")
        fresh = JobRegistry(tmp_path / "state")  # a reopened page / restarted server: no Popen handle
        found = fresh.latest()
        assert found is not None and found.id == job.id and fresh.is_running(found)
        with pytest.raises(JobConflictError, match="stop it or choose another"):
            fresh.start({"output_dir": str(tmp_path / "out" / "."), "model_name_or_path": "m"})
        assert fresh.stop(found, wait=10) is True
        assert not fresh.is_running(found) and fresh.get(job.id).stop_requested is not None
    finally:
        registry.stop(job, wait=0)
        os.killpg(job.pid, 9) if registry.is_running(job) else None


def test_dead_or_reused_pid_is_not_running(tmp_path: Path) -> None:
    from tuneforge.webui.jobs import Job

    registry = JobRegistry(tmp_path)
    stranger = Job("x", os.getpid(), str(tmp_path), str(tmp_path / "never.yaml"), "", 0.0)
    assert not registry.is_running(stranger)  # a live pid not running our config
    done = subprocess.run([sys.executable, "-c", "pass"])
    assert done.returncode == 0
    (tmp_path / "jobs.json").write_text("{broken")
    assert registry.jobs() == []  # a damaged registry never blocks the page


def test_progress_and_loss_rows() -> None:
    records = [
        {
            "current_steps": 1,
            "total_steps": 4,
            "loss": 2.0,
            "percentage": 25.0,
            "remaining_time": "0:00:03",
            "tokens_per_sec": 10.0,
        },
        {"current_steps": 2, "total_steps": 4, "eval_loss": 1.5, "percentage": 50.0},
    ]
    p = progress(records)
    assert p["step"] == 2 and p["total"] == 4 and p["percent"] == 50.0 and p["loss"] == 2.0
    assert loss_rows(records) == [
        {"step": 1, "loss": 2.0, "series": "train"},
        {"step": 2, "loss": 1.5, "series": "eval"},
    ]


# --- datasets -------------------------------------------------------------------------------------------------


def test_register_csv_keeps_other_entries_and_refuses_overwrite(tmp_path: Path) -> None:
    from tuneforge.data.registry import resolve_datasets
    from tuneforge.webui.datasets import build_entry, raw_rows, read_table, register_dataset

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(json.dumps({"old": {"file_name": "old.json"}}))
    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n")
    assert list(read_table(csv).columns) == ["question", "answer"]
    entry = build_entry("", "alpaca", {"prompt": "question", "response": "answer", "messages": "ignored"})
    assert entry["columns"] == {"prompt": "question", "response": "answer"}
    register_dataset(folder, "qa", csv, entry)
    registry = json.loads((folder / "dataset_info.json").read_text())
    assert set(registry) == {"old", "qa"} and registry["qa"]["file_name"] == "qa.json"
    assert raw_rows(folder, "qa", 1) == [{"question": "What is 2+2?", "answer": 4}] or raw_rows(folder, "qa", 1)
    assert resolve_datasets("qa", folder)[0].column("prompt") == "question"
    with pytest.raises(DataError, match="already in"):
        register_dataset(folder, "qa", csv, entry)
    register_dataset(folder, "qa", csv, entry, overwrite=True)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("bad.jsonl", '{"a": 1}\n{not json\n', "could not be read"),
        ("empty.csv", "", "could not be read|no rows"),
        ("x.txt", "hi", "unsupported file type"),
    ],
)
def test_malformed_uploads_give_a_clear_error(tmp_path: Path, name: str, text: str, match: str) -> None:
    from tuneforge.webui.datasets import read_table

    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=match):
        read_table(tmp_path / name)


def test_entry_needs_the_key_columns_and_a_safe_name(tmp_path: Path) -> None:
    from tuneforge.webui.datasets import build_entry, register_dataset

    with pytest.raises(DataError, match="messages"):
        build_entry("", "sharegpt", {"prompt": "q"})
    with pytest.raises(DataError, match="name"):
        register_dataset(tmp_path, "../evil", tmp_path / "x.csv", {"columns": {}})


# --- locales and VS Code --------------------------------------------------------------------------------------


def test_every_english_string_has_a_chinese_one_with_the_same_placeholders() -> None:
    import string

    en, zh = strings("en"), strings("zh")
    assert sorted(p.stem for p in LOCALE_DIR.glob("*.json")) == ["en", "zh"]
    assert set(en) == set(zh), set(en) ^ set(zh)
    fields = lambda text: {f for _, f, _, _ in string.Formatter().parse(text) if f}  # noqa: E731
    assert all(fields(en[k]) == fields(zh[k]) for k in en)


def test_every_label_key_of_the_page_is_in_the_locale(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from tuneforge.webui.app import build_ui
    from tuneforge.webui.context import Context

    ctx = Context.create(tmp_path)
    build_ui(ctx)
    keys = {key for _, key, _, _ in ctx.labels.entries}
    assert keys <= set(strings("en")), keys - set(strings("en"))
    zh = dict(zip([e[1] for e in ctx.labels.entries], ctx.labels.updates("zh"), strict=True))
    assert zh["btn.start"]["value"] == "开始" and zh["tab.train"]["label"] == "训练"


def test_debug_config_merges_launch_json(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model_name_or_path: m\n")
    launch = tmp_path / ".vscode" / "launch.json"
    launch.parent.mkdir()
    launch.write_text(json.dumps({"version": "0.2.0", "configurations": [{"name": "mine", "type": "node"}]}))
    assert debug_config_command(config, tmp_path) == launch
    debug_config_command(config, tmp_path)  # twice: still one entry for this config
    entries = json.loads(launch.read_text())["configurations"]
    assert [e["name"] for e in entries] == ["mine", "tuneforge train run.yaml"]
    assert entries[1]["type"] == "debugpy" and entries[1]["module"] == "tuneforge.cli"
    assert entries[1]["args"] == ["train", str(config)] and entries[1]["cwd"] == str(tmp_path)
    launch.write_text("{ // comment\n}")
    with pytest.raises(Exception, match="not plain JSON"):
        debug_config_command(config, tmp_path)
