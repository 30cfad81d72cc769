"""LongLoRA's shifted short attention (S²-Attn, `shift_attn`), for transformers 5's attention interface.

While training, each sequence is cut into four groups and attention stays inside a group; half of the heads see
groups shifted by half a group, so information still flows between neighbouring groups. Evaluation and generation
use full attention (as LongLoRA and LLaMA-Factory do). LLaMA-Factory's own patch rewrites the llama attention classes
of transformers 4.45-4.47 and does not run under transformers 5; here the grouped computation is an attention
function registered with transformers, so it serves every model whose attention goes through that interface and
whose heads see plain causal masks (`S2_ARCHITECTURES`), on top of `sdpa` or `eager`.

The masks are the model's own masks regrouped, so the wrapped-around group (the last tokens beside the first ones)
keeps true causality: the first tokens never see the last ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

S2_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
S2_BASES = ("sdpa", "eager")
GROUPS = 4  # LLaMA-Factory's group_size_ratio of 1/4


def _name(base: str) -> str:
    return f"tuneforge_s2_{base}"


def allowed_mask(mask: torch.Tensor | None, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """The model's attention mask as booleans [batch, 1, L, L] (True: may attend); None means plain causal."""
    if mask is None:
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        return causal.expand(batch, 1, length, length)
    mask = mask[..., :length, :length]
    allowed = mask if mask.dtype == torch.bool else mask == 0  # eager masks add 0 where allowed, -inf-ish elsewhere
    return allowed.expand(batch, 1, length, length)


def _grouped(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, size: int, **sdpa: Any):
    """Attention inside consecutive groups of `size` tokens: q, k, v [B, H, L, D], allowed [B, 1, L, L]."""
    b, h, length, d = q.shape
    n = length // size

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(b, h, n, size, d).transpose(1, 2).reshape(b * n, h, size, d)

    blocks = allowed.reshape(b, 1, n, size, n, size).diagonal(dim1=2, dim2=4)  # [B, 1, size, size, n]
    blocks = blocks.permute(0, 4, 1, 2, 3).reshape(b * n, 1, size, size)
    bias = torch.zeros(blocks.shape, dtype=q.dtype, device=q.device).masked_fill(~blocks, torch.finfo(q.dtype).min)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=bias, **sdpa)
    return out.reshape(b, n, h, size, d).transpose(1, 2).reshape(b, h, length, d)


def shifted_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor,
    scaling: float | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """S²-Attn of query [B, H, L, D] over key/value [B, Hkv, L, D]; returns [B, L, H, D] as attention functions do.

    The sequence is padded (masked) to a multiple of 4 and cut into 4 groups; heads H//2.. are rolled back by half
    a group before grouping and forward again after it.
    """
    h, length = query.shape[1], query.shape[2]
    key = key.repeat_interleave(h // key.shape[1], dim=1)
    value = value.repeat_interleave(h // value.shape[1], dim=1)
    pad = -length % GROUPS
    if pad:
        query, key, value = (F.pad(x, (0, 0, 0, pad)) for x in (query, key, value))
        allowed = F.pad(allowed, (0, pad, 0, pad), value=False)
    size = (length + pad) // GROUPS
    shift, half = size // 2, h // 2
    sdpa = {"dropout_p": dropout, "scale": scaling}
    plain = _grouped(query[:, :half], key[:, :half], value[:, :half], allowed, size, **sdpa)
    rolled = [x[:, half:].roll(-shift, dims=2) for x in (query, key, value)]
    moved = _grouped(*rolled, allowed.roll((-shift, -shift), dims=(2, 3)), size, **sdpa).roll(shift, dims=2)
    return torch.cat((plain, moved), dim=1)[:, :, :length].transpose(1, 2).contiguous()


def _s2_function(base: Callable[..., Any]) -> Callable[..., Any]:
    def attention(
        module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, Any]:
        dropout, scaling = kwargs.pop("dropout", 0.0), kwargs.pop("scaling", None)
        if not module.training or query.shape[2] != key.shape[2] or query.shape[2] < GROUPS:
            return base(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        allowed = allowed_mask(attention_mask, query.shape[0], query.shape[2], query.device)
        return shifted_attention(query, key, value, allowed, scaling, dropout), None

    return attention


def register() -> None:
    """Register `tuneforge_s2_sdpa` / `tuneforge_s2_eager` with transformers' attention and mask interfaces."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama.modeling_llama import eager_attention_forward

    bases = {"sdpa": (ALL_ATTENTION_FUNCTIONS["sdpa"], sdpa_mask), "eager": (eager_attention_forward, eager_mask)}
    for base, (function, mask) in bases.items():
        ALL_ATTENTION_FUNCTIONS.register(_name(base), _s2_function(function))
        ALL_MASK_ATTENTION_FUNCTIONS.register(_name(base), mask)


def check_shift_attn(model_type: str | None, attn: str | None) -> str:
    """The base attention S²-Attn wraps (`sdpa` for auto), or a clear refusal for other models / kernels."""
    if model_type not in S2_ARCHITECTURES:
        raise TuneforgeError(
            f"`shift_attn` supports {', '.join(S2_ARCHITECTURES)} models; this model is {model_type!r}. "
            "Remove `shift_attn` (train long contexts with `rope_scaling`)."
        )
    base = attn or "sdpa"
    if base not in S2_BASES:
        raise TuneforgeError(
            f"`shift_attn` works on top of `flash_attn: auto`, `sdpa` or `disabled` (eager), not {base}; "
            "change `flash_attn` or remove `shift_attn`."
        )
    return base


def preflight_shift_attn(cfg: TuneforgeConfig) -> None:
    """Refuse `shift_attn` for a model or kernel it does not support, before any data is processed."""
    from transformers import AutoConfig

    from tuneforge.models.loader import attn_implementation

    m = cfg.model
    hub = {"trust_remote_code": m.trust_remote_code, "revision": m.model_revision, "cache_dir": m.cache_dir}
    config = AutoConfig.from_pretrained(m.model_name_or_path, token=m.hf_hub_token, **hub)
    check_shift_attn(config.model_type, attn_implementation(m.flash_attn))


def enable_shift_attn(model: Any, base: str) -> None:
    """Switch a loaded model's attention to S²-Attn over `base` for training (full attention in eval mode)."""
    register()
    model.set_attn_implementation(_name(base))
    if model.config._attn_implementation != _name(base):  # transformers only warns for a model it cannot switch
        raise TuneforgeError(
            f"`shift_attn`: {type(model).__name__} does not use transformers' attention interface; remove `shift_attn`."
        )
    logger.info("Using shift short attention (S2-Attn) with 4 groups over %s attention.", base)
