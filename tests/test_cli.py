"""The command line: fast start, lazy imports, verbs, and errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_help_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\nfrom tuneforge.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "main_mods = {'torch', 'transformers'} & set(sys.modules)\n"
        "assert not main_mods, main_mods\nprint('lazy-ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "lazy-ok" in out.stdout, out.stderr


@pytest.mark.parametrize("args", [["--help"], ["config", "--help"], ["train", "--help"], ["data", "--help"]])
def test_help_lists_verbs(args: list[str]) -> None:
    out = run_cli(*args)
    assert out.returncode == 0
    assert "Usage:" in out.stdout


def test_top_help_names_every_verb() -> None:
    text = run_cli("--help").stdout
    for verb in [
        "train",
        "chat",
        "api",
        "export",
        "webui",
        "webchat",
        "eval",
        "env",
        "version",
        "config",
        "data",
        "make-tiny",
        "expand-layers",
        "help",
        "debug-config",
    ]:
        assert f"  {verb} " in text, verb


def test_unknown_key_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("stage: sft\nlora_rnak: 8\n")
    out = run_cli("config", "validate", str(path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "line 2" in out.stderr and "lora_rank" in out.stderr


def test_debug_env_shows_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lora_rnak: 8\n")
    out = run_cli("config", "validate", str(path), env={"TUNEFORGE_DEBUG": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_windows_path_message_is_one_paragraph(shared_dir: Path) -> None:
    out = run_cli("config", "validate", str(shared_dir / "compat/user-configs/qwen3_lora_sft.yaml"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Windows path" in out.stderr and "E:\\dataSource" in out.stderr


def test_config_given_only_by_flags() -> None:
    out = run_cli("config", "show", "--lora_rank", "4", "stage=pt")
    assert out.returncode == 0, out.stderr
    assert "lora_rank: 4" in out.stdout and "stage: pt" in out.stdout


def test_config_show_all_marks_defaults() -> None:
    out = run_cli("config", "show", "--all", "lora_rank=4")
    assert "lora_rank: 4\n" in out.stdout and "lora_alpha: null  # default" in out.stdout


def test_config_schema_is_json() -> None:
    out = run_cli("config", "schema")
    schema = json.loads(out.stdout)
    assert schema["properties"]["lora_rank"]["default"] == 8
    assert schema["properties"]["lora_rank"]["description"]


def test_help_on_a_key_comes_from_its_description() -> None:
    from tuneforge.config import field_info

    out = run_cli("help", "cutoff_len")
    assert field_info("cutoff_len").description in out.stdout


def test_env_prints_versions() -> None:
    out = run_cli("env")
    assert out.returncode == 0
    for name in ["python", "torch", "transformers", "peft", "datasets", "accelerate", "trl", "gradio", "vllm"]:
        assert f"{name}:" in out.stdout


def test_eval_without_a_task_exits_2_naming_the_keys() -> None:
    out = run_cli("eval", "model_name_or_path=org/model")
    assert out.returncode == 2 and "Nothing to evaluate" in out.stderr and "tasks:" in out.stderr


@pytest.mark.slow
def test_make_tiny_then_validate_user_config(tmp_path: Path, shared_dir: Path) -> None:
    model = tmp_path / "tiny-qwen3"
    out = run_cli("make-tiny", "--arch", "qwen3", "--out", str(model))
    assert out.returncode == 0, out.stderr
    cfg = shared_dir / "compat/user-configs/qwen3_lora_sft.yaml"
    ok = run_cli("config", "validate", str(cfg), f"model_name_or_path={model}")
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
