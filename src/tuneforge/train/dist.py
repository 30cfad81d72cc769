"""What a training process needs to know about the distributed job it belongs to (one rank of a torchrun job,
or a lone process): who writes outputs, who preprocesses data first, and the DDP defaults of each method."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

from tuneforge.train.ds_config import STAGE_NAMES, stage_file

logger = logging.getLogger(__name__)


def world_size() -> int:
    """Processes in the job (1 outside a distributed launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True in a rank of a multi-process job."""
    return world_size() > 1


def is_main_process() -> bool:
    """True on global rank 0 (the only rank that writes logs, plots, checkpoints, the config and exports)."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every rank (nothing outside an initialised process group)."""
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()


def preprocesses_first(shared_file_system: bool) -> bool:
    """True on the rank that builds the data cache for others: global rank 0 when the nodes share a file system
    (`data_shared_file_system`), else the local rank 0 of each node, as LLaMA-Factory does."""
    return is_main_process() if shared_file_system else int(os.environ.get("LOCAL_RANK", "0")) == 0


@contextmanager
def main_process_first(shared_file_system: bool = True) -> Iterator[None]:
    """The rank(s) `preprocesses_first` picks run the block first (e.g. build the data cache); the other ranks run
    it after them (reading that cache)."""
    first = preprocesses_first(shared_file_system)
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


def ddp_defaults(cfg: TuneforgeConfig, values: dict[str, Any], cuda: bool) -> None:
    """Fill the Trainer's DDP settings the user left unset, as LLaMA-Factory does (in place)."""
    if isinstance(values.get("deepspeed"), str) and values["deepspeed"].strip() in STAGE_NAMES:
        values["deepspeed"] = str(stage_file(values["deepspeed"].strip()))  # a stage name: the shipped file
    if not is_distributed():
        return
    if values.get("ddp_find_unused_parameters") is None and cfg.method.finetuning_type == "lora":
        values["ddp_find_unused_parameters"] = False  # every LoRA weight gets a gradient; the search breaks DDP
        logger.info("`ddp_find_unused_parameters` set to false for DDP with LoRA.")
    if not cuda and values.get("ddp_backend") is None:
        values["ddp_backend"] = "gloo"  # the CPU backend
