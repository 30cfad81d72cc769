"""A short LoRA SFT run writes every output LLaMA-Factory writes, in its layout, and they load with plain libraries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train_helpers import read_log, tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2: Path):
    return tokenizer_of(tiny_qwen2)


@pytest.fixture(scope="module")
def lora_run(tiny_qwen2: Path, tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from tuneforge.train.sft import run_sft

    out = tmp_path_factory.mktemp("lora_run")
    cfg = tiny_config(
        tiny_qwen2,
        out,
        plot_loss=True,
        save_strategy="steps",
        save_steps=2,
        save_total_limit=1,
        eval_strategy="steps",
        eval_steps=2,
        per_device_eval_batch_size=4,
        compute_accuracy=True,
        overwrite_output_dir=True,
    )
    metrics = run_sft(cfg, train_data(tokenizer, 16, eval_n=4), tokenizer=tokenizer)
    return out, metrics


def test_lora_run_writes_lf_outputs(lora_run: tuple[Path, dict]) -> None:
    out, metrics = lora_run
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer_config.json",
        "trainer_log.jsonl",
        "training_loss.png",
        "training_eval_loss.png",
        "train_results.json",
        "all_results.json",
        "eval_results.json",
        "trainer_state.json",
        "tuneforge_config.yaml",
    ):
        assert (out / name).is_file(), name
    assert not (out / ".staging").exists()
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-4"]  # save_total_limit: 1
    assert (out / "checkpoint-4" / "tuneforge_checkpoint.json").is_file()
    assert "eval_accuracy" in metrics and 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert json.loads((out / "train_results.json").read_text())["train_loss"] > 0


def test_trainer_log_has_one_line_per_logging_step(lora_run: tuple[Path, dict]) -> None:
    out, _ = lora_run
    records = read_log(out)
    train = [r for r in records if "loss" in r]
    assert [r["current_steps"] for r in train] == [1, 2, 3, 4]
    for r in train:
        assert r["total_steps"] == 4
        for key in ("lr", "epoch", "grad_norm", "tokens_per_sec", "elapsed_time", "remaining_time"):
            assert key in r, key
        assert r["tokens_per_sec"] > 0
    assert any("eval_loss" in r for r in records)


def test_adapter_loads_with_plain_peft(lora_run: tuple[Path, dict], tiny_qwen2: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = lora_run
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    model = PeftModel.from_pretrained(base, out)
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape[-1] == base.config.vocab_size
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template


def test_resolved_config_reloads(lora_run: tuple[Path, dict]) -> None:
    from tuneforge.config import load_config

    out, _ = lora_run
    cfg = load_config(out / "tuneforge_config.yaml")
    assert cfg.training.save_steps == 2 and cfg.method.finetuning_type == "lora"
