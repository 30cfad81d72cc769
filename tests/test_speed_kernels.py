"""Chunked linear + cross-entropy equals the model's own loss; Liger dispatch and its error messages."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from test_speed_attention import rows, tiny_qwen2
from tuneforge.data.collate import PaddingCollator, PaddingFreeCollator
from tuneforge.errors import TuneforgeError
from tuneforge.train.speed import kernels


def test_chunked_loss_matches_reference_loss_and_grads():
    torch.manual_seed(0)
    hidden = torch.randn(2, 37, 16, requires_grad=True)
    weight = torch.randn(301, 16, requires_grad=True)
    labels = torch.randint(0, 301, (2, 37))
    labels[:, :5] = -100
    logits = hidden @ weight.T
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 301), labels[:, 1:].reshape(-1))
    ref_grads = torch.autograd.grad(ref, (hidden, weight))
    loss = kernels.chunked_causal_lm_loss(hidden, weight, labels, chunk=7)
    grads = torch.autograd.grad(loss, (hidden, weight))
    assert abs(float(ref.detach()) - float(loss.detach())) < 1e-5
    for a, b in zip(ref_grads, grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_chunked_loss_honours_num_items_and_frozen_head():
    torch.manual_seed(1)
    hidden = torch.randn(1, 20, 8, requires_grad=True)
    weight = torch.randn(50, 8)  # frozen LM head (LoRA): no weight gradient is computed
    labels = torch.randint(0, 50, (1, 20))
    summed = kernels.chunked_causal_lm_loss(hidden, weight, labels, num_items_in_batch=torch.tensor(1), chunk=4)
    mean = kernels.chunked_causal_lm_loss(hidden, weight, labels, chunk=4)
    assert torch.allclose(summed / 19, mean)
    (grad,) = torch.autograd.grad(mean, (hidden,))
    assert grad[0, -1].abs().sum() == 0 and grad[0, 0].abs().sum() > 0


@pytest.mark.parametrize("collate", ["padded", "padding_free"])
def test_patched_model_trains_with_the_same_loss_and_grads(collate):
    features = rows([9, 14, 6])
    batch = PaddingCollator(0)(features) if collate == "padded" else PaddingFreeCollator()(features)
    results = []
    for patched in (False, True):
        model = tiny_qwen2("sdpa")
        if patched:
            kernels.patch_chunked_loss(model)
        model.train()
        out = model(**batch)
        out.loss.backward()
        results.append((out, {n: p.grad for n, p in model.named_parameters()}))
    (plain, plain_grads), (chunked, chunked_grads) = results
    assert chunked.logits is None and plain.logits is not None
    assert abs(float(plain.loss.detach()) - float(chunked.loss.detach())) < 1e-5
    for key, grad in plain_grads.items():
        assert torch.allclose(grad, chunked_grads[key], atol=1e-5), key


def test_patched_model_keeps_logits_in_eval():
    model = tiny_qwen2("sdpa")
    kernels.patch_chunked_loss(model)
    model.eval()
    batch = PaddingCollator(0)(rows([5]))
    assert model(**batch).logits.shape == (1, 5, 97)


class _Cfg:
    def __init__(self, mode="auto", enable=False, hf=False):
        self.training = types.SimpleNamespace(speed_kernels=mode, use_liger_kernel=hf)
        self.model = types.SimpleNamespace(enable_liger_kernel=enable)


def test_resolve_kernels(monkeypatch):
    monkeypatch.setattr(kernels, "liger_installed", lambda: False)
    assert kernels.resolve_kernels(_Cfg(), cuda=False, model_type="qwen2", vocab=151936) == "off"
    assert kernels.resolve_kernels(_Cfg(), cuda=True, model_type="qwen2", vocab=151936) == "torch"
    assert kernels.resolve_kernels(_Cfg(), cuda=True, model_type="qwen2", vocab=32000) == "off"
    assert kernels.resolve_kernels(_Cfg("torch"), cuda=False, model_type="qwen2", vocab=10) == "torch"
    with pytest.raises(TuneforgeError, match="pip install liger-kernel"):
        kernels.resolve_kernels(_Cfg(enable=True), cuda=True, model_type="qwen2", vocab=10)
    monkeypatch.setattr(kernels, "liger_installed", lambda: True)
    assert kernels.resolve_kernels(_Cfg(), cuda=True, model_type="qwen3", vocab=151936) == "liger"
    assert kernels.resolve_kernels(_Cfg(), cuda=True, model_type="gemma", vocab=151936) == "torch"
    assert kernels.resolve_kernels(_Cfg(hf=True), cuda=True, model_type="qwen2", vocab=151936) == "off"
    with pytest.raises(TuneforgeError, match="CUDA GPU"):
        kernels.resolve_kernels(_Cfg("liger"), cuda=False, model_type="qwen2", vocab=10)


def test_liger_dispatch_calls_the_architecture_patch(monkeypatch):
    calls = []

    def apply_liger_kernel_to_qwen2(rope=True, cross_entropy=False, fused_linear_cross_entropy=True, model=None):
        calls.append(dict(rope=rope, ce=cross_entropy, flce=fused_linear_cross_entropy, model=model))

    fake = types.ModuleType("liger_kernel.transformers")
    fake.apply_liger_kernel_to_qwen2 = apply_liger_kernel_to_qwen2
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", fake)
    model = tiny_qwen2("sdpa")
    kernels.apply_kernels(model, "liger")
    assert calls == [dict(rope=True, ce=False, flce=True, model=model)]  # rms_norm/swiglu absent: not passed
    model.config.model_type = "llama"
    with pytest.raises(TuneforgeError, match="speed_kernels: torch"):
        kernels.apply_liger(model)
