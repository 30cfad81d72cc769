"""The scalar value head of reward models and PPO: `v_head.summary` (Linear(hidden, 1)) on the last hidden state.

Saved as `value_head.safetensors` with keys `v_head.summary.weight` / `v_head.summary.bias` (LLaMA-Factory's
layout), which `tuneforge.infer.loading.load_value_head` reads back for `/v1/score/evaluation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.infer.loading import VALUE_HEAD_FILE

PREFIX = "v_head."


class ValueHead(nn.Module):
    """Linear(hidden, 1) under the name `summary`, so its state-dict keys are `summary.weight` / `summary.bias`."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.summary.weight, std=1 / (hidden_size + 1))
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values [B, T] from hidden states [B, T, H]."""
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def unwrap(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def backbone(model: Any) -> Any:
    """The decoder without its LM head (e.g. `Qwen2Model`), so hidden states cost no vocabulary projection."""
    return unwrap(model).base_model


def hidden_size(model: Any) -> int:
    """Hidden size of the (text) decoder."""
    config = unwrap(model).config
    return int(config.get_text_config().hidden_size)


def attach_value_head(model: Any, state_file: Path | None = None) -> ValueHead:
    """Give `model` a float32 `v_head` (trainable), loaded from `state_file` when given; returns the head."""
    head = ValueHead(hidden_size(model))
    if state_file is not None and Path(state_file).is_file():
        load_value_head_state(head, Path(state_file))
    device = next(unwrap(model).parameters()).device
    model.v_head = head.to(device)
    return model.v_head


def last_token_values(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One value per row at its last non-padding token (right-padded batches)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):  # its forward hooks the gradient all-reduce
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden, head = out.hidden_states[-1], model.module.v_head
    else:
        hidden = backbone(model)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        head = model.v_head
    values = head(hidden)
    last = attention_mask.long().sum(-1).clamp(min=1) - 1
    return values.gather(1, last.unsqueeze(1)).squeeze(1)


def save_value_head(head: nn.Module, folder: Path) -> Path:
    """Write `value_head.safetensors` into `folder`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / VALUE_HEAD_FILE
    state = {PREFIX + k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def load_value_head_state(head: nn.Module, path: Path) -> None:
    """Load `value_head.safetensors` (the `v_head.` keys) into `head`."""
    from safetensors.torch import load_file

    state = {k[len(PREFIX) :]: v for k, v in load_file(str(path)).items() if k.startswith(PREFIX)}
    head.load_state_dict(state)


def detach_value_head(model: Any) -> nn.Module | None:
    """Remove `v_head` from the model (so `save_pretrained` writes a plain causal LM) and return it."""
    head = getattr(model, "v_head", None)
    if head is not None:
        delattr(model, "v_head")
    return head
