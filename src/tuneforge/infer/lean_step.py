"""A text decode step that calls the decoder's own modules directly, used only after it matched the model's forward.

A decode step feeds one token per row. For a small model most of transformers' `ForCausalLM.forward` time is
not arithmetic but the wrappers around it: argument and output capturing, the causal-mask builder, output
dataclasses (measured: a 2-layer, 64-wide Qwen2 spends 0.5 ms in its layers and 0.6 ms around them per step).
`LeanStep` runs the same modules (embedding, rotary embedding, every decoder layer, final norm, LM head) with the
attention mask built once per step from the batch's padding mask. Nothing is re-implemented: the arithmetic is
the layers' own.

Whether a model's forward is exactly "embed, layers, norm, head" cannot be known from its class in general
(some scale embeddings, soft-cap logits, mix sliding-window layers), so `lean_step` first runs both ways on a
probe batch (one row left-padded, two decode steps) and keeps the lean step only when its logits equal the
forward's within float rounding and pick the same tokens; otherwise the engine keeps the model's forward.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ATTENTION = ("sdpa", "eager")  # the attention implementations whose mask format `attention_mask` builds
TOLERANCE = 1e-4  # largest logit difference accepted, relative to the largest logit (float rounding)


class LeanStep:
    """One decode step (`ids` [batch, 1]) over the model's decoder modules; returns last-position logits."""

    def __init__(self, causal: Any, decoder: Any, cache_kw: str) -> None:
        self.decoder, self.head = decoder, causal.get_output_embeddings()
        self.cache_kw = cache_kw
        self.layers = list(decoder.layers)
        self.eager = causal.config._attn_implementation == "eager"

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, cache: Any, positions: torch.Tensor) -> torch.Tensor:
        """Logits `[batch, vocab]` for `ids` (one new token per row) given the padding `mask` [batch, length]."""
        return self.head(self.hidden(ids, mask, cache, positions))

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, cache: Any, positions: torch.Tensor) -> torch.Tensor:
        """The final normed hidden state `[batch, hidden]` that the head turns into logits (as `__call__`)."""
        hidden = self.decoder.embed_tokens(ids)
        rotary = self.decoder.rotary_emb(hidden, positions)
        attention = attention_mask(mask, hidden.dtype, self.eager)
        kwargs = {self.cache_kw: cache, "use_cache": True, "position_embeddings": rotary, "position_ids": positions}
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=attention, **kwargs)
        return self.decoder.norm(hidden[:, -1])


def attention_mask(mask: torch.Tensor, dtype: torch.dtype, eager: bool) -> torch.Tensor | None:
    """The one-query attention mask `[batch, 1, 1, length]` from a padding mask: None when nothing is padded
    (every key is visible), boolean for SDPA, additive (0 / dtype minimum) for eager attention."""
    import torch

    if bool(mask.all()):
        return None
    visible = mask.bool()[:, None, None, :]
    if not eager:
        return visible
    return torch.zeros(visible.shape, dtype=dtype, device=mask.device).masked_fill(~visible, torch.finfo(dtype).min)


def lean_step(model: Any, cache_kw: str, new_cache: Any, pad_id: int) -> LeanStep | None:
    """A `LeanStep` for `model` when it has the standard decoder layout and matches the model's own forward on a
    probe, else None. `new_cache()` makes an empty KV cache for the model."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(causal, "model", None)
    parts = ("embed_tokens", "layers", "norm", "rotary_emb")
    if decoder is None or not all(hasattr(decoder, name) for name in parts):
        return None
    config = causal.config
    if config._attn_implementation not in ATTENTION or set(getattr(config, "layer_types", None) or []) - {
        "full_attention"
    }:
        return None
    step = LeanStep(causal, decoder, cache_kw)
    try:
        same = _matches(model, step, new_cache, pad_id)
    except Exception as error:  # any failure means "not this model": keep the model's forward
        logger.debug("Lean decode step not usable for %s: %s", type(causal).__name__, error)
        return None
    logger.info("Decode steps call %s's layers directly (lean step: %s)", type(causal).__name__, same)
    return step if same else None


def _matches(model: Any, step: LeanStep, new_cache: Any, pad_id: int) -> bool:
    """Whether two decode steps of a probe batch (row 0 left-padded) give the forward's logits and tokens."""
    import torch

    device = model.device
    ids = torch.tensor([[pad_id, pad_id, 11, 12, 13], [21, 22, 23, 24, 25]], device=device)
    mask = (torch.arange(5, device=device) >= torch.tensor([[2], [0]], device=device)).long()
    ours = new_cache()
    model(input_ids=ids, attention_mask=mask, position_ids=decode_positions(mask, 5), **{step.cache_kw: ours})
    theirs = copy.deepcopy(ours)
    token = torch.tensor([[31], [32]], device=device)
    for _ in range(2):
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)
        positions = decode_positions(mask, 1)
        expected = model(
            input_ids=token, attention_mask=mask, position_ids=positions, logits_to_keep=1, **{step.cache_kw: theirs}
        ).logits[:, -1]
        got = step(token, mask, ours, positions)
        if not _close(got, expected):
            return False
        token = expected.argmax(-1, keepdim=True)
    return True


def decode_positions(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Positions of the last `width` tokens of left-padded rows: each counts the row's real tokens before it
    (padding gets 0). A one-token step needs only the row's count: its new token is never padding."""
    if width == 1:
        return mask.sum(-1, keepdim=True) - 1
    return (mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Same shape, same token picked in every row, and logits equal within float rounding."""
    if got.shape != expected.shape or not bool((got.argmax(-1) == expected.argmax(-1)).all()):
        return False
    scale = float(expected.float().abs().max()) or 1.0
    return float((got.float() - expected.float()).abs().max()) <= TOLERANCE * scale
