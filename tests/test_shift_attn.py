"""LongLoRA shifted short attention (`shift_attn`): the grouped computation against a direct one, the wiring into
transformers models, and a tiny training run."""

from __future__ import annotations

import json

import pytest
import torch

from train_helpers import tiny_config, tokenizer_of, train_data
from tuneforge.models.shift_attn import S2_ARCHITECTURES, allowed_mask, enable_shift_attn, shifted_attention


def direct_s2(q, k, v, allowed, scale):
    """S²-Attn written out token by token: 4 groups of the (padded) sequence; heads H//2.. use groups that start
    half a group later (wrapping round); attention inside a group follows the original mask."""
    b, h, length, d = q.shape
    k = k.repeat_interleave(h // k.shape[1], dim=1)
    v = v.repeat_interleave(h // v.shape[1], dim=1)
    padded = length + (-length % 4)
    size = padded // 4
    full = torch.zeros(b, padded, padded, dtype=torch.bool)
    full[:, :length, :length] = allowed[:, 0]
    out = torch.zeros(b, h, length, d, dtype=q.dtype)
    for head in range(h):
        offset = size // 2 if head >= h // 2 else 0
        for group in range(4):
            idx = [(group * size + j + offset) % padded for j in range(size)]
            real = [i for i in idx if i < length]
            for bi in range(b):
                scores = q[bi, head, real] @ k[bi, head, real].T * scale
                ok = full[bi][real][:, real]
                scores = scores.masked_fill(~ok, float("-inf"))
                out[bi, head, real] = scores.softmax(-1) @ v[bi, head, real]
    return out.transpose(1, 2)


@pytest.mark.parametrize(("length", "heads", "kv_heads"), [(16, 4, 4), (13, 4, 2), (8, 3, 1)])
def test_shifted_attention_equals_direct_computation(length, heads, kv_heads):
    torch.manual_seed(0)
    q = torch.randn(2, heads, length, 8, dtype=torch.float64)
    k = torch.randn(2, kv_heads, length, 8, dtype=torch.float64)
    v = torch.randn(2, kv_heads, length, 8, dtype=torch.float64)
    mask = torch.ones(2, length, length, dtype=torch.bool).tril()
    mask[1, :, :3] = False  # the second row starts with 3 padding tokens (left padding)
    allowed = mask[:, None]
    got = shifted_attention(q, k, v, allowed, scaling=0.3)
    want = direct_s2(q, k, v, allowed, 0.3)
    assert got.shape == (2, length, heads, 8)
    real = torch.ones(2, length, dtype=torch.bool)
    real[1, :3] = False  # fully masked padding rows are meaningless
    torch.testing.assert_close(got[real], want[real])


def test_first_tokens_never_see_the_last_ones():
    """The wrapped-around group of the shifted heads keeps causality: token 0's output depends on token 0 only."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 16, 4, requires_grad=True) for _ in range(3))
    out = shifted_attention(q, k, v, allowed_mask(None, 1, 16, torch.device("cpu")))
    out[0, 0].sum().backward()
    assert k.grad[0, :, 1:].abs().sum() == 0 and v.grad[0, :, 1:].abs().sum() == 0


def test_eager_mask_is_read_as_allowed():
    float_mask = torch.full((1, 1, 4, 4), torch.finfo(torch.float32).min).triu(1)
    assert torch.equal(allowed_mask(float_mask, 1, 4, torch.device("cpu"))[0, 0], torch.ones(4, 4).tril().bool())


def _load(path, tmp_path, **overrides):
    from tuneforge.models.loader import load_model

    cfg = tiny_config(path, tmp_path, **overrides)
    return load_model(cfg, tokenizer_of(path), trainable=True)


def test_loaded_model_uses_s2_attention_in_training_only(tiny_qwen2, tmp_path):
    path = tiny_qwen2
    plain = _load(path, tmp_path, flash_attn="sdpa")
    s2 = _load(path, tmp_path, flash_attn="sdpa", shift_attn=True)
    ids = torch.randint(0, 1000, (2, 16))
    plain.eval(), s2.eval()
    with torch.no_grad():
        torch.testing.assert_close(s2(input_ids=ids).logits, plain(input_ids=ids).logits)
    plain.train(), s2.train()
    with torch.no_grad():
        full, grouped = plain(input_ids=ids).logits, s2(input_ids=ids).logits
    # the first group (tokens 0-3) sees the same context either way; later tokens lose the far context
    torch.testing.assert_close(grouped[:, :2], full[:, :2])
    assert not torch.allclose(grouped[:, 8:], full[:, 8:])


def test_eager_base_matches_the_direct_computation_on_a_model(tiny_llama, tmp_path):
    sdpa = _load(tiny_llama, tmp_path, flash_attn="sdpa", shift_attn=True).train()
    eager = _load(tiny_llama, tmp_path, flash_attn="disabled", shift_attn=True).train()
    ids = torch.randint(0, 1000, (1, 12))
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[0, :2] = 0
    with torch.no_grad():
        a = sdpa(input_ids=ids, attention_mask=mask).logits[:, 2:]
        b = eager(input_ids=ids, attention_mask=mask).logits[:, 2:]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_unsupported_model_or_kernel_is_refused():
    from tuneforge.errors import TuneforgeError
    from tuneforge.models.shift_attn import check_shift_attn

    with pytest.raises(TuneforgeError, match="llama, mistral, qwen2, qwen3"):
        check_shift_attn("gpt2", "sdpa")
    with pytest.raises(TuneforgeError, match="flash_attn"):
        check_shift_attn("llama", "flash_attention_2")
    assert check_shift_attn("qwen2", None) == "sdpa"


@pytest.mark.slow
def test_training_with_shift_attn_lowers_the_loss_and_saves_a_plain_model(tiny_qwen2, tmp_path):
    from tuneforge.train.sft import run_sft

    tokenizer = tokenizer_of(tiny_qwen2)
    cfg = tiny_config(tiny_qwen2, tmp_path, shift_attn=True, max_steps=4, learning_rate=1e-2)
    run_sft(cfg, train_data(tokenizer, 4), tokenizer)
    logs = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    losses = [row["loss"] for row in logs if "loss" in row]
    assert losses[-1] < losses[0]
    assert "tuneforge" not in (tmp_path / "adapter_config.json").read_text()


@pytest.mark.parametrize("arch", S2_ARCHITECTURES)
def test_every_supported_architecture_groups_its_attention(arch):
    """A one-layer random model of each listed architecture: full attention in eval mode, grouped in training."""
    import copy

    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        arch, vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    plain = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    s2 = copy.deepcopy(plain)
    enable_shift_attn(s2, "sdpa")
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(s2.eval()(input_ids=ids).logits, plain.eval()(input_ids=ids).logits)
        full, grouped = plain.train()(input_ids=ids).logits, s2.train()(input_ids=ids).logits
    torch.testing.assert_close(grouped[:, :2], full[:, :2])
    assert not torch.allclose(grouped[:, 8:], full[:, 8:])


def test_unsupported_model_stops_before_any_work(tmp_path, monkeypatch, capsys):
    """A gpt2 config with `shift_attn`: the CLI stops naming the supported models; output_dir is never made."""
    from transformers import GPT2Config

    from tuneforge.cli import main

    GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "never"
    argv = ["train", f"model_name_or_path={tmp_path / 'gpt2'}", f"output_dir={out}", "dataset=identity"]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "shift_attn=true"])
    assert stop.value.code != 0
    assert "llama, mistral, qwen2, qwen3" in capsys.readouterr().err
    assert not out.exists()


def test_the_padding_mask_reaches_the_grouped_attention(tiny_llama, tmp_path, monkeypatch):
    """transformers builds the model's mask for the registered S²-Attn names too: padding is masked in the groups."""
    from tuneforge.models import shift_attn

    seen = []

    def spy(mask, *args):
        seen.append(mask)
        return allowed_mask(mask, *args)

    monkeypatch.setattr(shift_attn, "allowed_mask", spy)
    model = _load(tiny_llama, tmp_path, flash_attn="sdpa", shift_attn=True).train()
    mask = torch.ones(1, 8, dtype=torch.long)
    mask[0, :3] = 0
    with torch.no_grad():
        model(input_ids=torch.randint(0, 1000, (1, 8)), attention_mask=mask)
    assert seen and seen[0] is not None
    assert not allowed_mask(seen[0], 1, 8, torch.device("cpu"))[0, 0, 5, :3].any()  # no real token sees padding
