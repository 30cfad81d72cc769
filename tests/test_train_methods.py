"""Every fine-tuning method trains one step on a tiny model and saves what LLaMA-Factory saves for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")

METHODS = {
    "full": ({"finetuning_type": "full"}, "model.safetensors"),
    "freeze": ({"finetuning_type": "freeze", "freeze_trainable_layers": 1}, "model.safetensors"),
    "oft": ({"finetuning_type": "oft", "oft_block_size": 16}, "adapter_model.safetensors"),
    "dora+rslora": ({"use_dora": True, "use_rslora": True, "lora_rank": 4}, "adapter_model.safetensors"),
    "pissa+loraplus": ({"pissa_init": True, "pissa_iter": 2, "loraplus_lr_ratio": 8.0}, "adapter_model.safetensors"),
    "lora+gc+neftune": (
        {"disable_gradient_checkpointing": False, "neftune_noise_alpha": 5.0, "additional_target": "norm"},
        "adapter_model.safetensors",
    ),
}


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2: Path):
    return tokenizer_of(tiny_qwen2)


@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_and_saves(method: str, tiny_qwen2: Path, tokenizer, tmp_path: Path) -> None:
    from tuneforge.train.sft import run_sft

    overrides, weights = METHODS[method]
    metrics = run_sft(
        tiny_config(tiny_qwen2, tmp_path, max_steps=1, per_device_train_batch_size=2, **overrides),
        train_data(tokenizer, 2),
        tokenizer,
    )
    assert metrics["train_loss"] > 0
    assert (tmp_path / weights).is_file()
    assert (tmp_path / "tokenizer_config.json").is_file()


def test_full_model_output_loads_and_changed(tiny_qwen2: Path, tokenizer, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tuneforge.train.sft import run_sft

    run_sft(
        tiny_config(tiny_qwen2, tmp_path, max_steps=1, finetuning_type="freeze", freeze_trainable_layers=1),
        train_data(tokenizer, 4),
        tokenizer,
    )
    before = AutoModelForCausalLM.from_pretrained(tiny_qwen2).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".layers.1." in k for k in changed)


def test_nan_loss_stops_with_the_step_and_causes(tiny_qwen2: Path, tokenizer, tmp_path: Path) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.train.sft import run_sft

    cfg = tiny_config(tiny_qwen2, tmp_path, max_steps=3, optim="sgd", learning_rate=1e30, max_grad_norm=0.0)
    with pytest.raises(TuneforgeError, match=r"step [23].*learning_rate"):
        run_sft(cfg, train_data(tokenizer, 12), tokenizer)
