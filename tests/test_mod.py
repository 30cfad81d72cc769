"""Mixture of depths: a routed layer against a per-row reference written here, the converted model against the
plain one when every token is routed with weight 1, the capacity schedule, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def causal_mask(length: int) -> torch.Tensor:
    """Additive causal mask [1, 1, L, L]: 0 on and below the diagonal, -inf above."""
    return torch.full((length, length), float("-inf")).triu(1)[None, None]


def reference_routing(layer, rope, x: torch.Tensor, w: torch.Tensor, b: float, capacity: float) -> torch.Tensor:
    """Per row: score each token, keep the top-k in order, run the plain layer on that sub-sequence alone (its own
    positions, causal), add score * (layer output - input) to those tokens; the others are unchanged."""
    out = x.clone()
    for row in range(x.shape[0]):
        scores = [float(x[row, t] @ w) + b for t in range(x.shape[1])]
        k = max(1, int(capacity * x.shape[1]))
        chosen = sorted(sorted(range(len(scores)), key=lambda t: -scores[t])[:k])
        sub = x[row, chosen][None]
        positions = torch.tensor([chosen])
        y = layer(sub, attention_mask=causal_mask(k), position_ids=positions, position_embeddings=rope(sub, positions))
        for j, t in enumerate(chosen):
            out[row, t] = x[row, t] + scores[t] * (y[0, j] - x[row, t])
    return out


def tiny_model(path: Path, attn: str = "eager"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn).eval()


@pytest.mark.parametrize("capacity", [0.5, 0.25, 0.01])
def test_a_routed_layer_matches_the_per_row_reference(capacity: float, tiny_llama: Path) -> None:
    from tuneforge.models.mod import MoDLayer

    model = tiny_model(tiny_llama)
    layer, rope = model.model.layers[1], model.model.rotary_emb
    routed = MoDLayer(layer, 64).eval()
    torch.manual_seed(0)
    routed.router.weight_predictor.weight.data.normal_(0, 0.3)
    routed.capacity = capacity
    x = torch.randn(3, 12, 64)
    positions = torch.arange(12)[None].expand(3, -1)
    with torch.no_grad():
        got = routed(
            x,
            attention_mask=causal_mask(12).expand(3, 1, 12, 12),
            position_ids=positions,
            position_embeddings=rope(x, positions),
        )
        w = routed.router.weight_predictor.weight[0]
        bias = float(routed.router.weight_predictor.bias[0])
        expected = reference_routing(layer, rope, x, w, bias, capacity)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    unrouted = (got == x).all(-1).sum(-1)
    assert unrouted.tolist() == [12 - max(1, int(capacity * 12))] * 3  # the other tokens skip the layer


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_routing_every_token_with_weight_one_is_the_plain_model(attn: str, tiny_llama: Path) -> None:
    from tuneforge.models.mod import MoDLayer, convert_to_mod

    plain, converted = tiny_model(tiny_llama, attn), convert_to_mod(tiny_model(tiny_llama, attn))
    routed = [m for m in converted.modules() if isinstance(m, MoDLayer)]
    assert converted.config.mod_layers == [1] and len(routed) == 1  # every second layer of 2
    for layer in routed:
        layer.router.weight_predictor.weight.data.zero_()
        layer.router.weight_predictor.bias.data.fill_(1.0)
        layer.capacity = 1.0
    ids = torch.tensor([[5, 9, 42, 7, 300, 11], [0, 0, 8, 13, 21, 34]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])  # left padding in the second row
    with torch.no_grad():
        expected = plain(input_ids=ids, attention_mask=mask).logits
        got = converted(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(got[mask.bool()], expected[mask.bool()], atol=1e-5)


def test_capacity_falls_from_one_to_an_eighth_over_training_forwards(tiny_llama: Path) -> None:
    from tuneforge.models.mod import MoDLayer

    routed = MoDLayer(tiny_model(tiny_llama).model.layers[1], 64).train()
    seen = [routed._next_capacity() for _ in range(1200)]
    assert seen[0] == 1.0 and seen[1] == pytest.approx(0.125 + 0.875 / 2)
    assert seen[-1] == pytest.approx(0.125 + 0.875 / 1000) and seen == sorted(seen, reverse=True)
    routed.eval()
    assert routed._next_capacity() == seen[-1]  # evaluation keeps the last training capacity


def test_gradients_reach_the_router(tiny_llama: Path) -> None:
    from tuneforge.models.mod import MoDLayer, convert_to_mod

    model = convert_to_mod(tiny_model(tiny_llama)).train()
    ids = torch.tensor([[5, 9, 42, 7, 300, 11, 12, 13]])
    layer = next(m for m in model.modules() if isinstance(m, MoDLayer))
    layer.steps = 3  # next capacity 0.125 + 0.875 / 4 = 0.34: int(0.34 * 8) = 2 of the 8 tokens are routed
    seen = []
    layer.block.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    assert layer.steps == 4 and seen == [2]
    router = layer.router.weight_predictor
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0


def test_with_a_kv_cache_every_token_goes_through_weighted(tiny_llama: Path) -> None:
    from tuneforge.models.mod import MoDLayer, convert_to_mod

    model = convert_to_mod(tiny_model(tiny_llama))
    layer = next(m for m in model.modules() if isinstance(m, MoDLayer))
    layer.capacity = 0.125
    ids = torch.tensor([[5, 9, 42, 7, 300, 11, 12, 13]])
    seen = {}
    layer.block.register_forward_hook(lambda mod, args, out: seen.setdefault("tokens", args[0].shape[1]))
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, do_sample=False)
    assert seen["tokens"] == 8  # the prompt went through whole


def test_other_architectures_are_refused_by_name(tiny_qwen2: Path) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.models.mod import convert_to_mod

    with pytest.raises(TuneforgeError, match=r"model type `qwen2`.*llama, mistral, mixtral, gemma, phi, starcoder2"):
        convert_to_mod(tiny_model(tiny_qwen2))


def test_load_needs_a_converted_model(tiny_llama: Path) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.models.mod import load_mod_model

    with pytest.raises(TuneforgeError, match="mixture_of_depths: convert"):
        load_mod_model(str(tiny_llama), lambda mapping: None)


def test_save_then_load_gives_back_every_weight(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tuneforge.models.mod import convert_to_mod, load_mod_model

    model = convert_to_mod(tiny_model(tiny_llama))
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    model.save_pretrained(tmp_path)
    loaded = load_mod_model(
        str(tmp_path), lambda mapping: AutoModelForCausalLM.from_pretrained(tmp_path, key_mapping=mapping)
    )
    saved, got = model.state_dict(), loaded.state_dict()
    assert saved.keys() == got.keys()
    assert all(torch.equal(saved[k], got[k]) for k in saved)
