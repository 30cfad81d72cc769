"""Quantization checks that need no weights: pre-quantized formats recognised from config.json and refused with
the package or hardware they need, on-the-fly methods refused with their reason, merges into quantized bases."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.errors import TuneforgeError

REAL_FIND_SPEC = importlib.util.find_spec


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    def find_spec(name: str, *args: object) -> object:
        if any(name == m or name.startswith(m + ".") for m in modules):
            return None
        return REAL_FIND_SPEC(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def fake_checkpoint(tiny: Path, folder: Path, quant: dict) -> Path:
    """A model folder holding only the tiny model's config.json with `quant` as its quantization_config."""
    folder.mkdir()
    config = json.loads((tiny / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": quant}))
    return folder


# quant_method -> (modules to hide, what the message must name)
FORMATS = {
    "gptq": (("gptqmodel", "optimum"), r"`gptqmodel`, `optimum` packages: pip install 'tuneforge\[gptq\]'"),
    "awq": (("gptqmodel",), r"`gptqmodel` package: pip install 'tuneforge\[awq\]'"),
    "aqlm": (("aqlm",), r"`aqlm` package: pip install 'tuneforge\[aqlm\]'"),
    "compressed-tensors": (("compressed_tensors",), r"pip install 'tuneforge\[compressed-tensors\]'"),
    "quanto": (("optimum",), r"`optimum.quanto` package: pip install 'tuneforge\[quanto\]'"),
    "torchao": (("torchao",), r"pip install 'tuneforge\[torchao\]'"),
    "bitsandbytes": (("bitsandbytes",), r"pip install 'tuneforge\[bnb\]'"),
}


@pytest.mark.parametrize("method", sorted(FORMATS))
def test_prequantized_checkpoint_names_its_package_before_any_weight(
    method: str, tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder has no weights at all: the message comes from reading config.json, before loading."""
    from tuneforge.infer.loading import load_for_inference
    from tuneforge.models.quantization import check_quantization

    model = fake_checkpoint(tiny_qwen2, tmp_path / method, {"quant_method": method, "bits": 4})
    hidden, message = FORMATS[method]
    _hide(monkeypatch, *hidden)
    cfg = load_config({"model_name_or_path": str(model)}, paths=False)
    with pytest.raises(TuneforgeError, match=message) as err:
        check_quantization(cfg)
    assert f"{method}-quantized checkpoint" in str(err.value)
    with pytest.raises(TuneforgeError, match=message):
        load_for_inference(cfg, tokenizer=object())


def test_eetq_checkpoint_and_eetq_quantization_need_cuda(
    tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneforge.models import quantization

    monkeypatch.setattr(quantization, "cuda_available", lambda: False)
    model = fake_checkpoint(tiny_qwen2, tmp_path / "eetq", {"quant_method": "eetq"})
    with pytest.raises(TuneforgeError, match="need a CUDA GPU and this machine has none"):
        quantization.check_quantization(load_config({"model_name_or_path": str(model)}, paths=False))
    on_the_fly = load_config({"quantization_bit": 8, "quantization_method": "eetq"}, paths=False)
    with pytest.raises(TuneforgeError, match="eetq` needs a CUDA GPU"):
        quantization.check_quantization(on_the_fly)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"quantization_method": "hqq"}, "transformers 5 cannot load models through HQQ"),
        ({"quantization_method": "gptq"}, "gptq-quantized checkpoint"),
        ({"quantization_method": "bnb", "quantization_bit": 3}, r"bnb supports \[4, 8\] bits, not 3"),
        ({"quantization_bit": 8, "quantization_device_map": "auto"}, "needs `quantization_bit: 4`"),
    ],
)
def test_on_the_fly_quantization_refusals(keys: dict, message: str) -> None:
    from tuneforge.models.quantization import quantization_config

    with pytest.raises(TuneforgeError, match=message):
        quantization_config(load_config({"quantization_bit": 4, **keys}, paths=False))


def test_bitsandbytes_config_follows_the_keys() -> None:
    import torch

    from tuneforge.models.quantization import quantization_config

    keys = {"quantization_bit": 4, "quantization_type": "fp4", "double_quantization": False, "fp16": True}
    four = quantization_config(load_config(keys, paths=False))
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "fp4" and not four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype == torch.float16
    assert quantization_config(load_config({"quantization_bit": 8}, paths=False)).load_in_8bit


def test_quantization_bit_on_a_prequantized_checkpoint_warns(
    tiny_qwen2: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As in LLaMA-Factory, `quantization_bit` has no effect on an already-quantized model; a warning says so."""
    from tuneforge.models.quantization import check_quantization

    model = fake_checkpoint(tiny_qwen2, tmp_path / "bnb", {"quant_method": "bitsandbytes", "load_in_4bit": True})
    with caplog.at_level("WARNING"):
        check_quantization(load_config({"model_name_or_path": str(model), "quantization_bit": 8}, paths=False))
    assert "`quantization_bit: 8` has no effect" in caplog.text


@pytest.mark.parametrize(
    ("keys", "quant", "message"),
    [
        ({"quantization_bit": 8, "quantization_method": "eetq"}, None, "only bitsandbytes weights can be dequantized"),
        ({}, {"quant_method": "gptq", "bits": 4}, "gptq-quantized checkpoint .* dequantizes only bitsandbytes"),
    ],
)
def test_merging_into_a_base_without_dequantization_is_refused(
    keys: dict, quant: dict | None, message: str, tiny_qwen2: Path, tmp_path: Path
) -> None:
    from tuneforge.export.merge import check_mergeable

    model = fake_checkpoint(tiny_qwen2, tmp_path / "q", quant) if quant else tiny_qwen2
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    cfg = load_config({"model_name_or_path": str(model), "adapter_name_or_path": str(tmp_path / "adapter"), **keys})
    with pytest.raises(TuneforgeError, match=message):
        check_mergeable(cfg)


def test_every_lf_quantization_key_is_a_tuneforge_field(shared_dir: Path) -> None:
    """LLaMA-Factory's quantization keys all exist here (each acts or is refused, see the tests above)."""
    from tuneforge.config.root import field_index

    args = json.loads((shared_dir / "compat" / "llamafactory-0.9.5-args.json").read_text())["args"]
    quant = {name for name in args if "quantiz" in name}
    assert {"quantization_bit", "export_quantization_bit", "double_quantization"} <= quant
    assert quant <= set(field_index())


def test_gptq_calibration_rows_from_a_registered_dataset(shared_dir: Path, qwen_tokenizer) -> None:
    """`export_quantization_dataset` may name a dataset of dataset_info.json, as for training (LF's c4_demo)."""
    from tuneforge.export.quantize import calibration_samples

    data = str(shared_dir / "lf-data")
    samples = calibration_samples("c4_demo", qwen_tokenizer, nsamples=4, maxlen=32, dataset_dir=data)
    assert len(samples) == 4 and all(len(s["input_ids"]) == 32 == sum(s["attention_mask"]) for s in samples)


def test_unknown_calibration_dataset_names_the_key(tmp_path: Path) -> None:
    from tuneforge.export.quantize import calibration_texts

    with pytest.raises(TuneforgeError, match="`export_quantization_dataset: nope`: not a file, nor one registered"):
        calibration_texts("nope", str(tmp_path))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(TuneforgeError, match="no rows with a non-empty `text` field"):
        calibration_texts(str(empty), str(tmp_path))


def test_cli_refuses_eetq_without_cuda_before_any_work(tiny_qwen2: Path, tmp_path: Path) -> None:
    """The train verb stops with the hardware reason, exit 1, no traceback, nothing written."""
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "never"
    keys = ["quantization_bit=8", "quantization_method=eetq", "dataset=identity", f"output_dir={out}"]
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", f"model_name_or_path={tiny_qwen2}", *keys]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode != 0, result.stderr
    assert "needs a CUDA GPU" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("keys", [{"deepspeed": "z3"}, {"fsdp": "full_shard auto_wrap"}])
def test_sharding_a_prequantized_checkpoint_is_refused(keys: dict, tiny_qwen2: Path, tmp_path: Path) -> None:
    """As in LLaMA-Factory: ZeRO-3 / FSDP cannot shard pre-quantized weights; ZeRO-2 can train them."""
    from tuneforge.models.quantization import check_quantization

    model = fake_checkpoint(tiny_qwen2, tmp_path / "ct", {"quant_method": "compressed-tensors"})
    with pytest.raises(TuneforgeError, match="ZeRO-3 and FSDP cannot shard"):
        check_quantization(load_config({"model_name_or_path": str(model), **keys}, paths=False))
    check_quantization(load_config({"model_name_or_path": str(model), "deepspeed": "z2"}, paths=False))
