"""`use_unsloth_gc`: offloaded activation checkpointing through transformers' own `offload`."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.models import loader


class _Model(torch.nn.Module):
    """Records how checkpointing was switched on."""

    supports_gradient_checkpointing = True

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(2))
        self.config = SimpleNamespace(use_cache=True)
        self.calls: list[dict[str, Any]] = []

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, offload: bool = False) -> None:
        self.calls.append({"kwargs": activation_checkpointing_kwargs, "offload": offload})

    def enable_input_require_grads(self) -> None:
        pass


def _cfg(tmp_path: Path, **keys: Any) -> Any:
    return load_config({"model_name_or_path": str(tmp_path), "output_dir": str(tmp_path / "o"), **keys})


def test_offload_asked_of_transformers_where_an_accelerator_trains(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(loader, "_accelerator_present", lambda: True)  # the model is still on the CPU then
    model = _Model()
    loader.prepare_for_training(model, _cfg(tmp_path, use_unsloth_gc=True))
    assert model.calls == [{"kwargs": {"use_reentrant": True}, "offload": True}]
    plain = _Model()
    loader.prepare_for_training(plain, _cfg(tmp_path))
    assert plain.calls == [{"kwargs": {"use_reentrant": True}, "offload": False}]


def test_on_cpu_or_without_checkpointing_it_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(loader, "_accelerator_present", lambda: False)
    model = _Model()
    with caplog.at_level(logging.WARNING):
        loader.prepare_for_training(model, _cfg(tmp_path, use_unsloth_gc=True))
        loader.prepare_for_training(
            _Model(), _cfg(tmp_path, use_unsloth_gc=True, disable_gradient_checkpointing=True)
        )
    assert model.calls == [{"kwargs": {"use_reentrant": True}, "offload": False}]  # still checkpointed, in place
    assert "`use_unsloth_gc` has no effect on CPU" in caplog.text
    assert "`use_unsloth_gc` has no effect: gradient checkpointing is off" in caplog.text


def test_a_transformers_without_offload_is_refused_before_loading(tmp_path: Path, monkeypatch) -> None:
    from tuneforge.train.modes import check_modes

    assert loader.offload_supported()  # the installed transformers has it
    monkeypatch.setattr(loader, "offload_supported", lambda: False)
    with pytest.raises(ConfigError, match="use_unsloth_gc` needs a transformers with offloaded"):
        check_modes(_cfg(tmp_path, use_unsloth_gc=True))
