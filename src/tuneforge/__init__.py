"""tuneforge: fine-tune large language models from data to deployment.

`import tuneforge` is cheap: torch and transformers are only imported by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.version import __version__

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


def load_config(source: Any = None, overrides: Any = None, **kwargs: Any) -> TuneforgeConfig:
    """Read a YAML file (or a dict) plus overrides into the typed config; see `tuneforge.config.load_config`."""
    from tuneforge.config import load_config as _load

    return _load(source, overrides, **kwargs)


def train(source: Any = None, overrides: Any = None) -> Any:
    """Train as the config says: `tuneforge.train("my.yaml", ["lora_rank=16"])` (a dict works too)."""
    from tuneforge.train import run_training

    return run_training(load_config(source, overrides))


__all__ = ["__version__", "load_config", "train"]
