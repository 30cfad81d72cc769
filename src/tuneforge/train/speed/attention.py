"""Varlen attention for padding-free batches, registered with transformers' `AttentionInterface`.

A padding-free batch is one row `[1, total]` holding several documents; the collator passes their boundaries as
`cu_seq_lens_q/k` and `max_length_q/k` (the keywords transformers forwards to the attention function), and
`position_ids` restart at 0 per document. Three backends compute causal attention within each document only:

- flash-attn's `flash_attn_varlen_func` when the package is installed (CUDA);
- `torch.nn.attention.varlen.varlen_attn` (torch >= 2.10, CUDA), causal = `window_size=(-1, 0)`;
- an exact reference on any device: one SDPA call per document (what the tests compare against).

Batches with a 2-D attention mask (padded batches, eval) go through transformers' own SDPA path unchanged.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F

NAME = "tuneforge_varlen"


def register() -> str:
    """Register the varlen attention (and its mask builder) with transformers; returns the implementation name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(NAME, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, _mask_only_when_padded)
    return NAME


def _mask_only_when_padded(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask for unpadded rows (document boundaries come from cu_seq_lens); SDPA's mask for padded batches."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention signature: q/k/v `[B, heads, T, D]` in, `[B, T, heads, D]` out."""
    cu = _boundaries(query, kwargs)
    if attention_mask is not None or cu is None or dropout > 0 or kwargs.get("sliding_window"):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    cu_q, cu_k, max_q, max_k = cu
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [T, heads, D]
    out = varlen_causal(q, k, v, cu_q, cu_k, max_q, max_k, scale)
    return out.unsqueeze(0), None


def _boundaries(query: torch.Tensor, kwargs: dict[str, Any]) -> tuple[Any, Any, int, int] | None:
    """(cu_q, cu_k, max_q, max_k) from the collator's keywords, or from restarting position ids; None if unknown."""
    if query.shape[0] != 1:
        return None
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_q is not None and cu_k is not None:
        return cu_q.to(query.device, torch.int32), cu_k.to(query.device, torch.int32), *_max_lengths(kwargs, cu_q)
    positions = kwargs.get("position_ids")
    if positions is None or positions.shape[0] != 1:
        return None
    starts = torch.nonzero(positions[0] == 0).flatten()
    total = torch.tensor([positions.shape[1]], device=starts.device)
    cu = torch.cat([starts, total]).to(query.device, torch.int32)
    if int(cu[0]) != 0:
        return None
    longest = int((cu[1:] - cu[:-1]).max())
    return cu, cu, longest, longest


def _max_lengths(kwargs: dict[str, Any], cu: torch.Tensor) -> tuple[int, int]:
    max_q, max_k = kwargs.get("max_length_q"), kwargs.get("max_length_k")
    if max_q is None or max_k is None:
        longest = int((cu[1:] - cu[:-1]).max())
        return longest, longest
    return int(max_q), int(max_k)


def varlen_causal(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
    scale: float,
    backend: str | None = None,
) -> torch.Tensor:
    """Causal attention within each document of q `[T, Hq, D]`, k/v `[T, Hkv, D]`; returns `[T, Hq, D]`."""
    backend = backend or pick_backend(q.device)
    if backend == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, softmax_scale=scale, causal=True)
    if backend == "torch_varlen":
        return _torch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale)
    return reference_varlen(q, k, v, cu_q, cu_k, scale)


def pick_backend(device: torch.device) -> str:
    """flash_attn (installed, CUDA) > torch_varlen (torch >= 2.10, CUDA) > reference (any device)."""
    if device.type != "cuda":
        return "reference"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attn"
    if importlib.util.find_spec("torch.nn.attention.varlen") is not None:
        return "torch_varlen"
    return "reference"


def _torch_varlen(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, max_q: int, max_k: int, scale: float) -> Any:
    """torch's varlen_attn; older releases take neither `scale` nor `enable_gqa`, so those are emulated."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    extra: dict[str, Any] = {"window_size": (-1, 0)}
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if "scale" in params:
        extra["scale"] = scale
    elif not math.isclose(scale, q.shape[-1] ** -0.5):
        q = q * (scale * math.sqrt(q.shape[-1]))
    return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **extra)


def reference_varlen(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, scale: float) -> torch.Tensor:
    """Exact per-document causal SDPA (any device): the reference every other backend must match."""
    outs = []
    bounds_q, bounds_k = cu_q.tolist(), cu_k.tolist()
    for i in range(len(bounds_q) - 1):
        (a, b), (c, d) = bounds_q[i : i + 2], bounds_k[i : i + 2]
        if b == a:
            continue
        qi, ki, vi = (t.transpose(0, 1).unsqueeze(0) for t in (q[a:b], k[c:d], v[c:d]))
        oi = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=scale, enable_gqa=True)
        outs.append(oi[0].transpose(0, 1))
    return torch.cat(outs, dim=0)


def choose_implementation(flash_attn: str, current: str | None, padding_free: bool, cuda: bool) -> str | None:
    """The attention implementation to load the model with: tuneforge's varlen for padding-free batches under
    `flash_attn: auto` on CUDA, otherwise `current` (what the loader mapped `flash_attn` to)."""
    if flash_attn == "auto" and padding_free and cuda:
        return register()
    return current
