"""Varlen attention for padding-free batches: same loss and gradients as the padded batch (CPU reference)."""

from __future__ import annotations

import pytest
import torch

from tuneforge.data.collate import PaddingCollator, PaddingFreeCollator
from tuneforge.train.speed import attention


def tiny_qwen2(attn: str, vocab: int = 97) -> torch.nn.Module:
    """A 2-layer fp32 Qwen2 with grouped-query attention (4 query heads, 2 kv heads)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        use_cache=False,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM._from_config(cfg, attn_implementation=attn).float()


def rows(lengths: list[int], vocab: int = 97, seed: int = 1) -> list[dict[str, list[int]]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [-100] * 2 + ids[2:]})
    return out


def loss_and_grads(model: torch.nn.Module, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    labels = batch["labels"]
    n_items = int((labels[:, 1:] != -100).sum())
    loss = model(**batch, num_items_in_batch=torch.tensor(n_items)).loss
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


def padded_batch(features: list[dict]) -> dict:
    batch = PaddingCollator(0)(features)
    shifted = batch["labels"].clone()
    shifted[:, 0] = -100  # the padding-free collator masks each sample's first token; do the same here
    batch["labels"] = shifted
    return batch


def test_reference_matches_manual_masked_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(9, 4, 8), torch.randn(9, 2, 8), torch.randn(9, 2, 8)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    out = attention.reference_varlen(q, k, v, cu, cu, 8**-0.5)
    doc = torch.tensor([0] * 4 + [1] * 5)
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(9, 9, dtype=torch.bool).tril()
    kk, vv = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, kk) * 8**-0.5
    expected = torch.einsum("hqk,khd->qhd", scores.masked_fill(~allowed, float("-inf")).softmax(-1), vv)
    assert torch.allclose(out, expected, atol=1e-6)


def test_registered_varlen_matches_padded_batch_loss_and_grads():
    name = attention.register()
    features = rows([7, 12, 5, 9])
    padded_loss, padded_grads = loss_and_grads(tiny_qwen2("sdpa"), padded_batch(features))
    free = PaddingFreeCollator()(features)
    varlen_loss, varlen_grads = loss_and_grads(tiny_qwen2(name), free)
    assert abs(padded_loss - varlen_loss) < 1e-5
    for key, grad in padded_grads.items():
        assert torch.allclose(grad, varlen_grads[key], atol=1e-5), key


def test_varlen_without_boundaries_derives_them_from_positions():
    name = attention.register()
    features = rows([6, 10])
    free = PaddingFreeCollator()(features)
    expected, _ = loss_and_grads(tiny_qwen2(name), dict(free))
    for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"):
        free.pop(key)
    derived, _ = loss_and_grads(tiny_qwen2(name), free)
    assert abs(expected - derived) < 1e-6
    whole, _ = loss_and_grads(tiny_qwen2("sdpa"), {**free, "position_ids": torch.arange(16)[None]})
    assert abs(whole - derived) > 1e-4  # attention across the boundary would change the loss


def test_padded_batches_fall_back_to_sdpa():
    name = attention.register()
    batch = padded_batch(rows([7, 12]))
    a, _ = loss_and_grads(tiny_qwen2(name), batch)
    b, _ = loss_and_grads(tiny_qwen2("sdpa"), batch)
    assert abs(a - b) < 1e-6


def test_auto_picks_varlen_only_for_padding_free_on_cuda():
    assert attention.choose_implementation("auto", None, padding_free=True, cuda=True) == attention.NAME
    assert attention.choose_implementation("auto", None, padding_free=True, cuda=False) is None
    assert attention.choose_implementation("auto", None, padding_free=False, cuda=True) is None
    assert attention.choose_implementation("sdpa", "sdpa", padding_free=True, cuda=True) == "sdpa"
    assert attention.pick_backend(torch.device("cpu")) == "reference"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["torch_varlen", "flash_attn"])
def test_gpu_varlen_backend_matches_per_document_sdpa(backend):
    import importlib.util

    if backend == "flash_attn" and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed")
    if backend == "torch_varlen" and importlib.util.find_spec("torch.nn.attention.varlen") is None:
        pytest.skip("torch.nn.attention.varlen needs torch >= 2.10")
    torch.manual_seed(0)
    lengths = [300, 17, 1024, 211]
    total = sum(lengths)
    q = torch.randn(total, 12, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(total, 2, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(total, 2, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    out = attention.varlen_causal(q, k, v, cu, cu, max(lengths), max(lengths), 128**-0.5, backend=backend)
    ref = attention.reference_varlen(q, k, v, cu, cu, 128**-0.5)
    assert (out.float() - ref.float()).abs().max() < 0.02
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad)
    for a, b in zip(got, want, strict=True):
        assert (a.float() - b.float()).abs().max() < 0.05 * max(1.0, b.float().abs().max().item())
