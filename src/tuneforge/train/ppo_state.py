"""PPO checkpoints: what the loop needs to continue exactly where it stopped.

`checkpoint-N/` holds the policy as `save_pretrained` writes it (adapter or model), `value_head.safetensors`, and
`ppo_state.pt` (optimizer, scheduler, KL controller, score moments, losses so far, RNG states). It is written under
`.staging/` and published with one atomic rename, as the Trainer stages' checkpoints are.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from tuneforge.errors import TuneforgeError
from tuneforge.infer.loading import VALUE_HEAD_FILE
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.value_head import detach_value_head, load_value_head_state, save_value_head

logger = logging.getLogger(__name__)

STATE_FILE = "ppo_state.pt"


@dataclass
class LoopState:
    """The parts of a PPO run that are not model weights."""

    step: int = 0
    tokens: int = 0
    losses: list[float] = field(default_factory=list)


def save_policy(model: Any, folder: Path) -> None:
    """`save_pretrained` without the value head, then the head as `value_head.safetensors`."""
    head = detach_value_head(model)
    try:
        model.save_pretrained(str(folder))
    finally:
        if head is not None:
            model.v_head = head
    if head is not None:
        save_value_head(head, folder)


def save_checkpoint(ppo: Any, loop: LoopState, parts: dict[str, Any], args: Any, fingerprint: dict) -> Path:
    """Write `checkpoint-<step>` atomically; `parts` holds the optimizer and scheduler. Rotates old ones."""
    out = Path(args.output_dir)
    name = f"{PREFIX_CHECKPOINT_DIR}-{loop.step}"
    staged = out / ckpt.STAGING / name
    staged.mkdir(parents=True, exist_ok=True)
    save_policy(ppo.model, staged)
    state = {
        "loop": vars(loop),
        "optimizer": parts["optimizer"].state_dict(),
        "scheduler": parts["scheduler"].state_dict(),
        "kl": ppo.kl.value,
        "moments": vars(ppo.moments),
        "rng": _rng_state(),
    }
    torch.save(state, staged / STATE_FILE)
    ckpt.publish(staged, out / name, fingerprint)
    rotate_checkpoints(output_dir=str(out), save_total_limit=args.save_total_limit, use_mtime=False)
    logger.info("Saved PPO checkpoint %s", out / name)
    return out / name


def restore_checkpoint(ppo: Any, parts: dict[str, Any], folder: str) -> LoopState:
    """Load weights, value head, optimizer, scheduler, controller state and RNG from `folder`."""
    path = Path(folder)
    if not (path / STATE_FILE).is_file():
        raise TuneforgeError(f"{folder} is not a PPO checkpoint (no {STATE_FILE}); pick a checkpoint of a PPO run.")
    _load_weights(ppo.model, path)
    load_value_head_state(ppo.model.v_head, path / VALUE_HEAD_FILE)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    parts["optimizer"].load_state_dict(state["optimizer"])
    parts["scheduler"].load_state_dict(state["scheduler"])
    ppo.kl.value = state["kl"]
    vars(ppo.moments).update(state["moments"])
    _set_rng_state(state["rng"])
    logger.info("Resuming PPO from %s (step %d)", folder, state["loop"]["step"])
    return LoopState(**state["loop"])


def _load_weights(model: Any, folder: Path) -> None:
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    elif (folder / "model.safetensors").is_file():
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    else:
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(model, str(folder), strict=False)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
