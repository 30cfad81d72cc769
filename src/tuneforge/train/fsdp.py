"""FSDP2 on CPU processes (gloo), through the Trainer and accelerate.

accelerate turns its FSDP plugin on only for GPU-like devices: on CPU ranks it leaves the job as plain DDP
(`MULTI_CPU`) although torch's `fully_shard` runs on CPU with gloo. While the Trainer builds its `Accelerator`,
`cpu_fsdp` lets the FSDP plugin the Trainer made from `fsdp` / `fsdp_config` take effect on CPU ranks as well, so
accelerate shards the model with FSDP2 and saves a full state dict exactly as it does on GPUs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)


def fsdp_version(cfg: TuneforgeConfig) -> int:
    """The FSDP version the Trainer will use: `fsdp_config`'s `fsdp_version` (or `version`), else 2."""
    raw = cfg.training.fsdp_config
    if isinstance(raw, str):
        text = raw.strip()
        try:
            raw = json.loads(text if text.startswith("{") else Path(text).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 2  # the Trainer reports an unreadable fsdp_config itself
    raw = raw if isinstance(raw, dict) else {}
    return int(raw.get("fsdp_version", raw.get("version", 2)))


def wants_cpu_fsdp(args: Any) -> bool:
    """True for an FSDP2 run (`fsdp` set, `fsdp_config.fsdp_version` 2, the default) on several CPU processes."""
    from tuneforge.train.dist import is_distributed

    plugin_args = getattr(args, "fsdp_plugin_args", None)
    if not plugin_args or not is_distributed():
        return False
    return int(plugin_args.get("fsdp_version", 2)) == 2 and args.device.type == "cpu"


@contextmanager
def cpu_fsdp(args: Any) -> Iterator[None]:
    """Within the block, an `AcceleratorState` built on CPU ranks with an FSDP plugin runs FSDP (not DDP)."""
    if not wants_cpu_fsdp(args):
        yield
        return
    from accelerate import state as accelerate_state
    from accelerate.utils import DistributedType

    original = accelerate_state.AcceleratorState.__init__

    def init(self: Any, *a: Any, fsdp_plugin: Any = None, **kw: Any) -> None:
        original(self, *a, fsdp_plugin=fsdp_plugin, **kw)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            accelerate_state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            logger.info("FSDP2 on CPU: accelerate shards the model over the %d gloo processes.", self.num_processes)

    accelerate_state.AcceleratorState.__init__ = init
    try:
        yield
    finally:
        accelerate_state.AcceleratorState.__init__ = original
