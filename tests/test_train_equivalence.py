"""Invariants on a tiny CPU fp32 model: equivalent settings must give the same loss, gradients and weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import identity_rows, tiny_config, tokenizer_of, train_data

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2: Path):
    return tokenizer_of(tiny_qwen2)


def _loss_and_grads(model, batch: dict) -> tuple[float, dict]:
    model.zero_grad()
    labels = batch["labels"]
    n_items = int((labels[:, 1:] != -100).sum())
    out = model(**batch, num_items_in_batch=n_items)
    out.loss.backward()
    return out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_packed_batch_equals_padded_batch(tiny_qwen2: Path, tokenizer, attn: str) -> None:
    """One packed row (positions restarting per sample, no attention mask) == the padded batch, within 1e-5."""
    from transformers import AutoModelForCausalLM

    from tuneforge.data.collate import PaddingCollator, PaddingFreeCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, attn_implementation=attn, dtype=torch.float32)
    model.config.use_cache = False
    rows = identity_rows(tokenizer, 4)
    for row in rows:  # the packed collator masks each sample's first label; do the same for the padded batch
        row["labels"][0] = -100
    padded = PaddingCollator(tokenizer.pad_token_id)(rows)
    packed = PaddingFreeCollator()(rows)
    packed = {k: packed[k] for k in ("input_ids", "labels", "position_ids")}
    loss_a, grads_a = _loss_and_grads(model, padded)
    loss_b, grads_b = _loss_and_grads(model, packed)
    assert loss_a == pytest.approx(loss_b, abs=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grad, grads_b[name], atol=1e-5, rtol=1e-4, msg=name)


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(out / "adapter_model.safetensors")


def test_batch_8x1_equals_batch_1x8_with_accumulation(tiny_qwen2: Path, tokenizer, tmp_path: Path) -> None:
    """Token-weighted loss: 8 rows of different lengths in one batch or accumulated one by one, same update."""
    from tuneforge.train.sft import run_sft

    common = {"max_steps": 1, "optim": "sgd", "learning_rate": 0.5, "disable_shuffling": True, "lora_dropout": 0.0}
    a, b = tmp_path / "a", tmp_path / "b"
    run_sft(tiny_config(tiny_qwen2, a, per_device_train_batch_size=8, **common), train_data(tokenizer, 8), tokenizer)
    run_sft(
        tiny_config(tiny_qwen2, b, per_device_train_batch_size=1, gradient_accumulation_steps=8, **common),
        train_data(tokenizer, 8),
        tokenizer,
    )
    wa, wb = _weights(a), _weights(b)
    assert any(t.abs().sum() > 0 for k, t in wa.items() if "lora_B" in k)  # the update did something
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-4, msg=key)


def test_merged_lora_matches_base_plus_adapter(tiny_qwen2: Path) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.config import load_config
    from tuneforge.models.adapters import peft_config

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    model = get_peft_model(base, peft_config(base, load_config({"lora_rank": 4}, paths=False), "lora"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)  # a non-trivial adapter
    ids = torch.tensor([[5, 17, 300, 9, 42, 1000]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        merged = model.merge_and_unload()
        got = merged(input_ids=ids).logits
    assert (expected - merged.eval()(input_ids=ids).logits).abs().max() < 1e-4
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
