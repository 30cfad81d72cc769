"""Token-budget batches and micro-batch fusion: every sample once per epoch, budgets hold, same loss and grads."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from train_helpers import identity_rows, tiny_config, tokenizer_of
from tuneforge.data.collate import PaddingFreeCollator
from tuneforge.train.speed import batching
from tuneforge.train.speed.plan import plan_speed


def test_token_budget_uses_every_sample_once_per_epoch_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(500)] + [900]  # one sample longer than the budget
    sampler = batching.TokenBudgetBatchSampler(lengths, 512, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lengths)))  # each sample exactly once
        for batch in batches:
            assert sum(lengths[i] for i in batch) <= 512 or batch == [500]
        orders.append([tuple(b) for b in batches])
    assert orders[0] != orders[1]  # a new order each epoch
    assert sum(lengths) / (512 * len(sampler)) > 0.9  # best-fit fills the budget


def test_token_budget_without_shuffle_is_stable():
    sampler = batching.TokenBudgetBatchSampler([5, 5, 5, 5], 10, shuffle=False)
    sampler.set_epoch(4)
    assert list(sampler) == [[0, 1], [2, 3]]


def _micro_batch_grads(model: torch.nn.Module, features: list[dict], groups: list[list[int]]) -> tuple:
    """Token-weighted accumulation as the Trainer does it: sum of label losses / labels in the whole step."""
    model.zero_grad()
    batches = [PaddingFreeCollator()([features[i] for i in g]) for g in groups]
    items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    total = 0.0
    for b in batches:
        loss = model(**b, num_items_in_batch=torch.tensor(items)).loss
        loss.backward()
        total += float(loss.detach())
    return total, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_fused_batch_equals_eight_micro_batches():
    from test_speed_attention import rows, tiny_qwen2

    features = rows([9, 14, 6, 11, 8, 13, 7, 10])
    model = tiny_qwen2("sdpa")
    unfused_loss, unfused = _micro_batch_grads(model, features, [[i] for i in range(8)])
    fused_loss, fused = _micro_batch_grads(model, features, [list(range(8))])
    assert abs(unfused_loss - fused_loss) < 1e-5
    for key, grad in unfused.items():
        assert torch.allclose(grad, fused[key], atol=1e-5), key


def _one_sgd_step(model_dir: Path, out: Path, **overrides) -> dict[str, torch.Tensor]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from tuneforge.train.sft import TrainData, run_sft

    tokenizer = tokenizer_of(model_dir)
    data = TrainData(Dataset.from_list(identity_rows(tokenizer, 8)), None, PaddingFreeCollator())
    cfg = tiny_config(
        model_dir,
        out,
        finetuning_type="full",
        per_device_train_batch_size=1,
        gradient_accumulation_steps=8,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        disable_shuffling=True,
        **overrides,
    )
    run_sft(cfg, data, tokenizer)
    return {k: v.float() for k, v in AutoModelForCausalLM.from_pretrained(out).state_dict().items()}


def test_recipe_fusion_gives_the_same_update(tiny_qwen2, tmp_path):
    unfused = _one_sgd_step(tiny_qwen2, tmp_path / "unfused", fuse_micro_batches="off")
    fused = _one_sgd_step(tiny_qwen2, tmp_path / "fused", fuse_micro_batches="on")
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_qwen2).state_dict()
    for key, value in unfused.items():
        assert torch.allclose(value, fused[key], atol=1e-5), key
    assert any(not torch.allclose(before[k].float(), v, atol=1e-4) for k, v in fused.items())  # it did train


def test_recipe_token_budget_steps(tiny_qwen2, tmp_path):
    import json

    from datasets import Dataset

    from tuneforge.train.sft import TrainData, run_sft

    tokenizer = tokenizer_of(tiny_qwen2)
    rows = identity_rows(tokenizer, 12)
    lengths = [len(r["input_ids"]) for r in rows]
    budget = max(lengths) * 2
    expected = len(batching.TokenBudgetBatchSampler(lengths, budget))
    data = TrainData(Dataset.from_list(rows), None, PaddingFreeCollator())
    cfg = tiny_config(tiny_qwen2, tmp_path, max_steps=None, num_train_epochs=1, max_tokens_per_batch=budget)
    run_sft(cfg, data, tokenizer)
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == expected < len(rows)
    assert state["num_input_tokens_seen"] == sum(lengths)


def test_plan_fuses_only_when_asked_or_on_cuda(tiny_qwen2, tmp_path):
    from tuneforge.data.collate import PaddingCollator
    from tuneforge.train.args import build_training_args
    from tuneforge.train.sft import TrainData

    cfg = tiny_config(tiny_qwen2, tmp_path, per_device_train_batch_size=1, gradient_accumulation_steps=8)
    data = TrainData([{"input_ids": [1, 2]}], None, PaddingCollator(0))
    args, _ = build_training_args(cfg, cuda=False)
    plan = plan_speed(cfg, args, data, cuda=False)
    assert plan.fused == 1 and not plan.padding_free and isinstance(data.collator, PaddingCollator)
    plan = plan_speed(cfg, args, data, cuda=True)  # auto on CUDA: 8 x cutoff 2048 tokens fits the fusion cap
    assert plan.fused == 8 and plan.padding_free and isinstance(data.collator, PaddingFreeCollator)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 1)


def test_lora_base_in_bf16_on_cuda_only(tiny_qwen2, tmp_path):
    from test_speed_attention import tiny_qwen2 as small_model
    from tuneforge.train.speed.plan import SpeedPlan, frozen_base_in_bf16, prepare_model

    cfg = tiny_config(tiny_qwen2, tmp_path, bf16=True)
    assert frozen_base_in_bf16(cfg, cuda=True) and not frozen_base_in_bf16(cfg, cuda=False)
    assert not frozen_base_in_bf16(tiny_config(tiny_qwen2, tmp_path, bf16=True, finetuning_type="full"), cuda=True)
    model = small_model("sdpa")
    prepare_model(model, cfg, SpeedPlan(cuda=True))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "sdpa"  # not padding-free: attention unchanged
