"""End to end: the users' LLaMA-Factory merge config, through the real `tuneforge export` CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export_helpers import train_lora

USER_CONFIG = "compat/user-configs/qwen3_merge_lora.yaml"


@pytest.mark.slow
def test_users_merge_config_runs_unchanged(shared_dir: Path, tiny_qwen3: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    config = tmp_path / "qwen3_merge_lora.yaml"
    shutil.copy(shared_dir / USER_CONFIG, config)
    adapter = train_lora(tiny_qwen3, tmp_path / "saves" / "lora", seed=3)
    out = tmp_path / "output" / "Qwen3-0.6B-lora_sft"
    overrides = [
        f"model_name_or_path={tiny_qwen3}",
        f"adapter_name_or_path={adapter}",
        "template=qwen3",
        f"export_dir={out}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "export", str(config), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"model.safetensors", "config.json", "tokenizer.json", "Modelfile"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3"
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen3, dtype=torch.float32)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[name], base.state_dict()[name]), "the adapter was merged"


@pytest.mark.slow
def test_cli_refusal_exits_2_without_traceback(tiny_qwen3: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "export", f"model_name_or_path={tiny_qwen3}", f"export_dir={out}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "overwrite_output_dir" in result.stderr and "Traceback" not in result.stderr
