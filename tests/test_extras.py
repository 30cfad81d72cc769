"""Optional packages: each feature whose package is missing stops before any work, naming the extra to install."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.extras import REPORT_TO, check_extras

REAL_FIND_SPEC = importlib.util.find_spec


def _hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make `module` look uninstalled (its import fails) for this test."""

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        if name == module or name.startswith(module + "."):
            return None
        return REAL_FIND_SPEC(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


FEATURES = [
    *[("train", {"report_to": name}, module, extra) for name, (module, extra) in REPORT_TO.items()],
    ("train", {"report_to": ["none", "wandb"]}, "wandb", "wandb"),
    ("train", {"deepspeed": "ds_z2.json"}, "deepspeed", "deepspeed"),
    ("train", {"use_swanlab": True}, "swanlab", "swanlab"),
    ("train", {"use_liger_kernel": True}, "liger_kernel", "liger"),
    ("train", {"enable_liger_kernel": True}, "liger_kernel", "liger"),
    ("train", {"speed_kernels": "liger"}, "liger_kernel", "liger"),
    ("train", {"quantization_bit": 4}, "bitsandbytes", "bnb"),
    ("infer", {"quantization_bit": 8, "quantization_method": "eetq"}, "eetq", "eetq"),
    ("train", {"quantization_bit": 8, "quantization_method": "eetq"}, "eetq", "eetq"),
    ("infer", {"infer_backend": "vllm"}, "vllm", "vllm"),
    ("infer", {"infer_backend": "sglang"}, "sglang", "sglang"),
    ("export", {"export_quantization_bit": 4, "export_dir": "x"}, "gptqmodel", "quantize"),  # table only
    ("train", {"use_galore": True, "finetuning_type": "full"}, "galore_torch", "galore"),
    ("train", {"use_apollo": True, "finetuning_type": "full"}, "apollo_torch", "apollo"),
    ("train", {"use_badam": True, "finetuning_type": "full"}, "badam", "badam"),
    ("train", {"use_adam_mini": True}, "adam_mini", "adam-mini"),
]


@pytest.mark.parametrize(("verb", "values", "module", "extra"), FEATURES, ids=lambda v: str(v))
def test_missing_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, verb: str, values: dict, module: str, extra: str
) -> None:
    cfg = load_config({"finetuning_type": "lora", **values}, paths=False)
    _hide(monkeypatch, module)
    with pytest.raises(ConfigError) as err:
        check_extras(cfg, verb)
    assert f"pip install 'tuneforge[{extra}]'" in str(err.value) and f"`{module}`" in str(err.value)


def test_installed_package_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: object())
    check_extras(load_config({"report_to": "wandb", "deepspeed": "x.json"}, paths=False), "train")


@pytest.mark.parametrize(("module", "backend"), [("vllm", "vllm_backend"), ("sglang", "sglang_backend")])
def test_inference_backends_name_their_extra(monkeypatch: pytest.MonkeyPatch, module: str, backend: str) -> None:
    import importlib

    checker = importlib.import_module(f"tuneforge.infer.{backend}")
    _hide(monkeypatch, module)
    with pytest.raises(Exception, match=rf"tuneforge\[{module}\]"):
        checker.check(load_config({"infer_backend": module}, paths=False))


def test_model_loader_quantizer_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.models import quantization

    _hide(monkeypatch, "bitsandbytes")
    with pytest.raises(ConfigError, match=r"tuneforge\[bnb\]"):
        quantization.quantization_config(load_config({"quantization_bit": 4}, paths=False))


def test_train_with_missing_tracker_stops_before_any_work(tiny_qwen3: Path, tmp_path: Path) -> None:
    """`report_to: wandb` without wandb: exit 1, the extra named, no traceback, output_dir never created."""
    if REAL_FIND_SPEC("wandb") is not None:
        pytest.skip("wandb is installed here")
    out = tmp_path / "never"
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", f"model_name_or_path={tiny_qwen3}", f"output_dir={out}"]
    result = subprocess.run([*cmd, "report_to=wandb", "dataset=identity"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install 'tuneforge[wandb]'" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_export_quantization_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export checks its settings first (bits, calibration data, GPU), then the package, naming the extra."""
    from tuneforge.export.quantize import check_export_quantization

    cfg = load_config({"export_quantization_bit": 4, "export_quantization_dataset": "c.jsonl"}, paths=False)
    _hide(monkeypatch, "gptqmodel")
    with pytest.raises(Exception, match=r"pip install 'tuneforge\[quantize\]'"):
        check_export_quantization(cfg, cuda=True)
