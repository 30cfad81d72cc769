"""Keys LLaMA-Factory acts on and tuneforge used to drop: each one's effect, shown on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneforge.config import load_config
from tuneforge.errors import ConfigError


def _cfg(model: Path, **values: object):
    return load_config({"model_name_or_path": str(model), "disable_gradient_checkpointing": True, **values})


def test_print_param_status_lists_every_parameter(tiny_qwen3: Path, capsys: pytest.CaptureFixture) -> None:
    from train_helpers import tokenizer_of
    from tuneforge.models.adapters import apply_finetuning
    from tuneforge.models.loader import load_model

    cfg = _cfg(tiny_qwen3, print_param_status=True)
    model = apply_finetuning(load_model(cfg, tokenizer_of(tiny_qwen3), trainable=True), cfg)
    lines = capsys.readouterr().out.splitlines()
    status = [line for line in lines if line.startswith("name: ")]
    assert len(status) == len(list(model.named_parameters()))
    assert any("lora_A" in line and "trainable: True" in line for line in status)
    assert any("embed_tokens" in line and "trainable: False" in line for line in status)


@pytest.mark.parametrize("upcast", [False, True])
def test_upcast_lmhead_output_gives_float32_logits(tiny_qwen3: Path, upcast: bool) -> None:
    from train_helpers import tokenizer_of
    from tuneforge.models.loader import load_model

    cfg = _cfg(tiny_qwen3, upcast_lmhead_output=upcast, infer_dtype="bfloat16")
    model = load_model(cfg, tokenizer_of(tiny_qwen3), trainable=True).to(torch.bfloat16)
    logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == (torch.float32 if upcast else torch.bfloat16)


def test_adapter_folder_is_looked_up_inside_each_adapter() -> None:
    """Training, inference and export all read `cfg.model.adapters`."""
    assert load_config({"adapter_name_or_path": "a,b/", "adapter_folder": "sub"}, paths=False).model.adapters == [
        "a/sub",
        "b/sub",
    ]
    assert load_config({"adapter_name_or_path": "a"}, paths=False).model.adapters == ["a"]


def test_quantization_device_map_auto_is_refused_for_training(tmp_path: Path) -> None:
    from tuneforge.train.modes import check_modes

    cfg = load_config({"quantization_bit": 4, "quantization_device_map": "auto", "do_train": True}, paths=False)
    with pytest.raises(ConfigError, match="inference only"):
        check_modes(cfg)
