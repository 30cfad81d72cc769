"""The lean decode step: used for the standard decoder layouts, refused when it would differ from the forward."""

from __future__ import annotations

import pytest
import torch

from tuneforge.infer.hf_backend import _cache_keyword, _new_cache
from tuneforge.infer.lean_step import attention_mask, lean_step


def _load(folder, attention: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention).eval()


def _lean(model):
    with torch.inference_mode():
        return lean_step(model, _cache_keyword(model), lambda: _new_cache(model), pad_id=0)


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_qwen3", "tiny_llama"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_standard_decoders_get_the_lean_step(request: pytest.FixtureRequest, arch: str, attention: str) -> None:
    model = _load(request.getfixturevalue(arch), attention)
    step = _lean(model)
    assert step is not None
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    ids = torch.tensor([[0, 5, 6, 7], [8, 9, 10, 11]])
    cache = _new_cache(model)
    with torch.inference_mode():
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], **{_cache_keyword(model): cache})
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]
        logits = step(ids[:, -1:], mask, cache, positions)
        alone = model(input_ids=ids[1:, :], attention_mask=mask[1:]).logits[:, -1]
    assert logits.shape == (2, model.config.vocab_size)
    torch.testing.assert_close(logits[1:], alone, atol=1e-4, rtol=1e-4)  # padding of row 0 does not leak


def test_a_model_whose_forward_differs_keeps_its_forward(tiny_qwen2) -> None:
    model = _load(tiny_qwen2, "sdpa")
    forward = model.forward

    def softcapped(*args, **kwargs):  # as Gemma 2 does after the head: the layers alone no longer give the logits
        out = forward(*args, **kwargs)
        out.logits = 30.0 * torch.tanh(out.logits / 30.0) + 1.0
        return out

    model.forward = softcapped
    assert _cache_keyword(model) == "cache"  # from the class: the wrapper's signature names no cache argument
    assert _lean(model) is None


def test_sliding_window_layers_keep_the_forward(tiny_qwen2) -> None:
    model = _load(tiny_qwen2, "sdpa")
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    assert _lean(model) is None


def test_attention_mask_formats() -> None:
    assert attention_mask(torch.ones(2, 5, dtype=torch.long), torch.float32, eager=False) is None
    padded = torch.tensor([[0, 1, 1], [1, 1, 1]])
    boolean = attention_mask(padded, torch.float32, eager=False)
    assert boolean.dtype == torch.bool and boolean.shape == (2, 1, 1, 3) and boolean[0, 0, 0].tolist() == [0, 1, 1]
    additive = attention_mask(padded, torch.float32, eager=True)
    assert additive[0, 0, 0, 0] == torch.finfo(torch.float32).min and additive[0, 0, 0, 1:].abs().sum() == 0
