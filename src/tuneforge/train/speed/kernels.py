"""Fused training kernels: Liger's model patches where installed, else a chunked linear + cross-entropy in torch.

The chunked loss never holds the `[tokens, vocab]` logits at once: it walks the label positions in chunks, computes
each chunk's loss and its gradients for the hidden states and the LM head right away (an `autograd.Function`), and
keeps only those gradients. Prompt positions (label -100) are dropped before the LM head, which sft runs spend
nothing on. Numerically it is the model's own loss: logits in float32, sum over label tokens / label tokens.
"""

from __future__ import annotations

import importlib.util
import logging
import types
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

IGNORE = -100
LIGER_MODEL_TYPES = ("qwen2", "qwen3", "llama")
LARGE_VOCAB = 65536
CHUNK_BYTES = 1 << 29  # float32 logits per chunk (512 MiB)


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `labels`, gradients computed chunk by chunk."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int) -> Any:
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h, y = hidden[start : start + chunk], labels[start : start + chunk]
            logits = (h @ weight.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            grad = torch.softmax(logits, dim=-1)
            grad[torch.arange(len(y), device=y.device), y] -= 1.0
            grad = grad.to(hidden.dtype)
            if grad_h is not None:
                grad_h[start : start + chunk] = grad @ weight
            if grad_w is not None:
                grad_w += (grad.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None


def chunked_causal_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: Any = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """The causal-LM loss of `hidden` `[B, T, H]` through the LM head `weight` `[V, H]` against unshifted `labels`.

    Same as transformers' `ForCausalLMLoss`: predicts token t+1 from position t, sums over labels != -100 and
    divides by `num_items_in_batch` (or by the label count).
    """
    shifted = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[..., 1:].reshape(-1)
    keep = torch.nonzero(shifted != IGNORE).flatten()
    flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep.to(hidden.device))
    targets = shifted.index_select(0, keep).to(hidden.device)
    chunk = chunk or max(64, CHUNK_BYTES // (4 * weight.shape[0]))
    total = _LinearCrossEntropy.apply(flat, weight, targets, chunk) if len(keep) else (hidden.sum() * 0.0).float()
    denominator = num_items_in_batch if num_items_in_batch is not None else max(len(keep), 1)
    if torch.is_tensor(denominator):
        denominator = denominator.to(total.device)
    return total / denominator


def patch_chunked_loss(model: Any) -> None:
    """Make `model.forward` (a transformers causal LM) train with the chunked loss (logits are not returned)."""
    original = model.forward

    def forward(self: Any, *args: Any, labels: Any = None, **kwargs: Any) -> Any:
        if labels is None or not self.training or args or type(self.lm_head) is not torch.nn.Linear:
            return original(*args, labels=labels, **kwargs)
        from transformers.modeling_outputs import CausalLMOutputWithPast

        items = kwargs.pop("num_items_in_batch", None)
        kwargs.pop("logits_to_keep", None)
        outputs = self.model(**kwargs)
        loss = chunked_causal_lm_loss(outputs.last_hidden_state, self.lm_head.weight, labels, items)
        return CausalLMOutputWithPast(loss=loss, logits=None, past_key_values=outputs.past_key_values)

    model.forward = types.MethodType(forward, model)


def liger_installed() -> bool:
    """Whether the liger-kernel package can be imported."""
    return importlib.util.find_spec("liger_kernel") is not None


def apply_liger(model: Any) -> None:
    """Patch `model` (before adapters are added) with Liger's kernels for its architecture."""
    import inspect

    module = importlib.import_module("liger_kernel.transformers")
    model_type = model.config.model_type
    apply = getattr(module, f"apply_liger_kernel_to_{model_type}", None)
    if apply is None or model_type not in LIGER_MODEL_TYPES:
        raise TuneforgeError(f"Liger kernels are not wired for model_type {model_type!r}; set `speed_kernels: torch`.")
    wanted = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False}
    wanted["fused_linear_cross_entropy"] = True
    params = inspect.signature(apply).parameters
    apply(model=model, **{k: v for k, v in wanted.items() if k in params})


def resolve_kernels(cfg: TuneforgeConfig, cuda: bool, model_type: str, vocab: int) -> str:
    """'liger', 'torch' or 'off' for this config and machine; a clear error when Liger is asked for but missing."""
    mode = cfg.training.speed_kernels
    if cfg.training.use_liger_kernel:
        return "off"  # HF Trainer applies Liger itself
    asked_liger = mode == "liger" or (cfg.model.enable_liger_kernel and mode == "auto")
    if asked_liger:
        where = "`enable_liger_kernel: true`" if cfg.model.enable_liger_kernel else "`speed_kernels: liger`"
        if not liger_installed():
            raise TuneforgeError(f"{where} needs the liger-kernel package (pip install liger-kernel) and a CUDA GPU.")
        if not cuda:
            raise TuneforgeError(f"{where} needs a CUDA GPU (Liger's kernels are Triton); remove it on this machine.")
        return "liger"
    if mode != "auto":
        return mode
    if not cuda:
        return "off"
    if liger_installed() and model_type in LIGER_MODEL_TYPES:
        return "liger"
    return "torch" if vocab > LARGE_VOCAB else "off"


def apply_kernels(model: Any, mode: str) -> None:
    """Apply the resolved kernel mode to a freshly loaded causal LM."""
    if mode == "liger":
        apply_liger(model)
    elif mode == "torch":
        patch_chunked_loss(model)
    if mode != "off":
        logger.info("Training kernels: %s", "Liger" if mode == "liger" else "chunked linear + cross-entropy")
