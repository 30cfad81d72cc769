"""Optimizer containers the custom optimizers need, each saving and restoring its whole state through the
Trainer's ordinary `optimizer.pt` so a resumed run continues exactly:

- `CombinedOptimizer`: several optimizers over disjoint parameters stepped as one (Muon + AdamW);
- `LayerwiseOptimizer`: one optimizer per parameter, stepped from that parameter's gradient hook (layer-wise
  GaLore / APOLLO), following the learning rate the Trainer's scheduler sets on it;
- `keep_projectors`: GaLore / APOLLO keep a projector object in their state; it is saved as plain tensors and
  numbers (the Trainer reloads with `weights_only=True`) and rebuilt on load;
- `resumable_blocks`: BAdam's block optimizer saves which block is active, its switch schedule, the float32
  master copy of the block and the learning rate, not only the inner Adam state.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

# Projector classes GaLore / APOLLO store in their optimizer state, by "module.Class" name.
PROJECTORS = (
    "galore_torch.galore_projector.GaLoreProjector",
    "apollo_torch.svd_projector.GaLoreProjector",
    "apollo_torch.random_projector.GradientProjector",
)


class CombinedOptimizer(torch.optim.Optimizer):
    """Named optimizers over disjoint parameters, stepped, scheduled and saved as one."""

    def __init__(self, parts: dict[str, torch.optim.Optimizer]) -> None:
        self.parts = parts
        super().__init__([g for part in parts.values() for g in part.param_groups], {})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Step every part (a closure is evaluated once)."""
        loss = closure() if closure is not None else None
        for part in self.parts.values():
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Each part's state dict under its name."""
        return {"parts": {name: part.state_dict() for name, part in self.parts.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore each part; the parts' new group dicts become this optimizer's groups (the scheduler's view)."""
        for name, part in self.parts.items():
            part.load_state_dict(state_dict["parts"][name])
        self.param_groups = [g for part in self.parts.values() for g in part.param_groups]


class LayerwiseOptimizer(torch.optim.Optimizer):
    """One optimizer per parameter, stepped as soon as that parameter's gradient is accumulated.

    The Trainer steps and zeroes this container (no-ops) and schedules its one learning rate, which each
    per-parameter optimizer takes at its step; its gradient is freed right after, which saves the memory.
    """

    def __init__(self, per_param: dict[torch.nn.Parameter, torch.optim.Optimizer], lr: float) -> None:
        self.per_param = per_param
        super().__init__([torch.zeros(1)], {"lr": lr})
        for param in per_param:
            param.register_post_accumulate_grad_hook(self._step_one)

    def _step_one(self, param: torch.nn.Parameter) -> None:
        optimizer = self.per_param[param]
        for group in optimizer.param_groups:
            group["lr"] = self.param_groups[0]["lr"]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Nothing to do: every parameter was updated during the backward pass."""
        return closure() if closure is not None else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to do: each gradient was freed right after its update."""

    def state_dict(self) -> dict[str, Any]:
        """The scheduled learning rate and every per-parameter optimizer's state, in parameter order."""
        return super().state_dict() | {"per_param": [opt.state_dict() for opt in self.per_param.values()]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the learning rate and every per-parameter optimizer."""
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "per_param"})
        for optimizer, saved in zip(self.per_param.values(), state_dict["per_param"], strict=True):
            optimizer.load_state_dict(saved)


def keep_projectors(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make a GaLore / APOLLO optimizer's projectors survive `state_dict()` -> `torch.load(weights_only=True)`."""
    optimizer.register_state_dict_post_hook(_flatten_projectors)
    optimizer.register_load_state_dict_pre_hook(_set_projectors_aside)
    optimizer.register_load_state_dict_post_hook(_rebuild_projectors)
    return optimizer


def _flatten_projectors(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    for key, entry in state_dict["state"].items():
        projector = entry.get("projector")
        if projector is not None and not isinstance(projector, dict):
            kind = PROJECTORS.index(f"{type(projector).__module__}.{type(projector).__name__}")
            state_dict["state"][key] = {**entry, "projector": {"kind": kind, **vars(projector)}}
    return state_dict  # new entries: the live state keeps its projector objects


def _set_projectors_aside(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """torch's loader would rebuild the projectors' strings as sequences: keep them out of its way."""
    state = dict(state_dict["state"])
    aside = {key: entry["projector"] for key, entry in state.items() if isinstance(entry.get("projector"), dict)}
    for key in aside:
        state[key] = {k: v for k, v in state[key].items() if k != "projector"}
    optimizer.__dict__["_saved_projectors"] = aside
    return {**state_dict, "state": state}


def _rebuild_projectors(optimizer: torch.optim.Optimizer) -> None:
    aside = optimizer.__dict__.pop("_saved_projectors", {})
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, saved in aside.items():
        optimizer.state[params[int(key)]]["projector"] = _projector(saved, params[int(key)].device)


def _projector(saved: dict[str, Any], device: torch.device) -> Any:
    fields = dict(saved)
    module, name = PROJECTORS[fields.pop("kind")].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    projector = cls.__new__(cls)
    matrix = fields.get("ortho_matrix")
    if isinstance(matrix, (list, tuple)):
        fields["ortho_matrix"] = [m.to(device) for m in matrix]
    elif matrix is not None:
        fields["ortho_matrix"] = matrix.to(device)
    vars(projector).update(fields)
    return projector


def resumable_blocks(block: Any) -> Any:
    """Give a BAdam `BlockOptimizer` (one process, no ZeRO-3) a state dict that restores the active block."""
    block.state_dict = lambda: _block_state(block)
    block.load_state_dict = lambda state_dict: _load_block_state(block, state_dict)
    return block


def _block_state(block: Any) -> dict[str, Any]:
    masters = block.param_idx2hp
    return {
        "base": block.base_optimizer.state_dict(),
        "active": block.block_prefix_list.index(block.active_param_prefixs),
        "next": block.current_block_idx,
        "order": list(getattr(block, "block_order", [])),
        "global_step": block.global_step,
        "lr": [group["lr"] for group in block.param_groups],
        "master_index": list(masters),
        "masters": [masters[i].detach() for i in masters],
    }


def _load_block_state(block: Any, state: dict[str, Any]) -> None:
    block.current_block_idx = state["active"]
    block.switch_trainable_params(verbose=0)  # the checkpoint's block trainable, fresh float32 masters
    block.current_block_idx, block.global_step = state["next"], state["global_step"]
    if hasattr(block, "block_order"):
        block.block_order = list(state["order"])
    masters = block.param_idx2hp
    if list(masters) != list(state["master_index"]):
        raise ValueError("the BAdam checkpoint's active block does not match this model's parameters")
    for index, saved in zip(state["master_index"], state["masters"], strict=True):
        masters[index].data.copy_(saved)
    block.base_optimizer.load_state_dict(state["base"])
    for group, lr in zip(block.param_groups, state["lr"], strict=True):
        group["lr"] = lr
