"""The users' own inference configs (`llamafactory-cli chat ...`) run through `tuneforge chat` unchanged,
apart from the model path (theirs is a Windows path), the adapter and the template (theirs names llama3 for
a Qwen3 model, which tuneforge refuses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _chat(config: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "chat", str(config), *overrides, "max_new_tokens=8"],
        input="你好\nexit\n",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )


@pytest.fixture(scope="module")
def trained_adapter(tiny_qwen3: Path, tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "sft"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneforge.cli",
            "train",
            str(shared_dir / "compat/user-configs/qwen3_lora_sft.yaml"),
            f"model_name_or_path={tiny_qwen3}",
            "template=qwen3",
            f"dataset_dir={shared_dir / 'lf-data'}",
            f"output_dir={out}",
            "max_steps=2",
            "max_samples=8",
            "cutoff_len=128",
            "logging_steps=1",
            "save_steps=100",
            "disable_tqdm=true",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "adapter_model.safetensors").exists()
    return out


def test_chat_with_the_users_lora_config(shared_dir: Path, tiny_qwen3: Path, trained_adapter: Path) -> None:
    result = _chat(
        shared_dir / "compat/user-configs/qwen3_infer_lora.yaml",
        f"model_name_or_path={tiny_qwen3}",
        f"adapter_name_or_path={trained_adapter}",
        "template=qwen3",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Assistant: " in result.stdout


def test_chat_with_the_users_base_config(shared_dir: Path, tiny_qwen3: Path) -> None:
    result = _chat(
        shared_dir / "compat/user-configs/qwen3_infer_base.yaml", f"model_name_or_path={tiny_qwen3}", "template=qwen3"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Assistant: " in result.stdout


def test_the_users_base_config_as_written_is_refused_clearly(shared_dir: Path, tiny_qwen3: Path) -> None:
    """Their `template: llama3` does not fit a Qwen3 tokenizer: a clear exit 2, not garbage output."""
    result = _chat(shared_dir / "compat/user-configs/qwen3_infer_base.yaml", f"model_name_or_path={tiny_qwen3}")
    assert result.returncode == 2, result.stdout[-500:]
    assert "Traceback" not in result.stderr and "llama3" in result.stderr
