"""FP8 training: a clear refusal without a GPU of compute capability >= 8.9, and (GPU only) a run in FP8."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from train_helpers import read_log, tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")


def cfg_with(tmp_path: Path, **keys):
    from tuneforge.config import load_config

    base = {"model_name_or_path": "org/model", "stage": "sft", "output_dir": str(tmp_path)}
    return load_config({**base, **keys}, paths=False)


def test_fp8_refuses_without_a_cuda_gpu(tmp_path: Path) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.train.fp8 import check_fp8

    with pytest.raises(TuneforgeError, match=r"compute capability 8\.9.*no CUDA GPU"):
        check_fp8(cfg_with(tmp_path, fp8=True), cuda=False)
    with pytest.raises(TuneforgeError, match="no CUDA GPU"):  # the all-gather switch implies fp8, as in LF
        check_fp8(cfg_with(tmp_path, fp8_enable_fsdp_float8_all_gather=True), cuda=False)
    check_fp8(cfg_with(tmp_path), cuda=False)  # no fp8: nothing to check


def test_fp8_refuses_an_older_gpu_and_other_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.train.fp8 import check_fp8

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100")
    with pytest.raises(TuneforgeError, match=r"A100 has 8\.0"):
        check_fp8(cfg_with(tmp_path, fp8=True), cuda=True)
    with pytest.raises(TuneforgeError, match="fp8_backend: torchao"):
        check_fp8(cfg_with(tmp_path, fp8=True, fp8_backend="te"), cuda=True)


def test_fp8_names_the_extra_when_torchao_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.train import fp8

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(TuneforgeError, match=r"tuneforge\[fp8\]"):
        fp8.check_fp8(cfg_with(tmp_path, fp8=True), cuda=True)


def test_fp8_layer_filter_skips_heads_embeddings_and_odd_sizes() -> None:
    from tuneforge.train.fp8 import fp8_layer_filter

    assert fp8_layer_filter(torch.nn.Linear(64, 128), "model.layers.0.mlp.up_proj")
    assert not fp8_layer_filter(torch.nn.Linear(64, 128), "lm_head")
    assert not fp8_layer_filter(torch.nn.Linear(64, 8), "model.layers.0.self_attn.q_proj.lora_A.default")
    assert not fp8_layer_filter(torch.nn.Embedding(16, 16), "model.embed_tokens")


def test_fp8_with_quantization_or_another_stage_is_refused(tmp_path: Path) -> None:
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="quantized"):
        cfg_with(tmp_path, fp8=True, quantization_bit=4, finetuning_type="lora")
    with pytest.raises(TuneforgeError, match="stages pt and sft"):
        cfg_with(tmp_path, fp8=True, stage="dpo")


def _fp8_gpu() -> bool:
    return (
        torch.cuda.is_available()
        and torch.cuda.get_device_capability() >= (8, 9)
        and importlib.util.find_spec("torchao") is not None
    )


@pytest.mark.gpu
@pytest.mark.skipif(not _fp8_gpu(), reason="needs a CUDA GPU of compute capability >= 8.9 and torchao")
@pytest.mark.parametrize(
    ("method", "bf16"),
    [("full", True), ("full", False), ("lora", True)],
    ids=["full-bf16-rowwise", "full-fp32-tensorwise", "lora-bf16"],
)
def test_fp8_training_runs_in_float8_and_learns(
    method: str, bf16: bool, tiny_qwen2: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tuneforge.train.sft import run_sft

    tokenizer = tokenizer_of(tiny_qwen2)
    extra = {"lora_rank": 16, "additional_target": "embed_tokens"} if method == "lora" else {}
    cfg = tiny_config(
        tiny_qwen2, tmp_path, finetuning_type=method, fp8=True, bf16=bf16, max_steps=20, learning_rate=1e-3, **extra
    )
    with caplog.at_level("INFO", logger="tuneforge.train.fp8"):
        run_sft(cfg, train_data(tokenizer, n=16), tokenizer)
    assert "linear layers use torchao float8 matmuls" in caplog.text
    losses = [r["loss"] for r in read_log(tmp_path) if "loss" in r]
    assert losses[-1] < losses[0], losses
