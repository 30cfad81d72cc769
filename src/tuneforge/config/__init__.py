"""One typed configuration for every tuneforge verb, read from LLaMA-Factory-style YAML."""

from tuneforge.config.loader import config_from_file_or_flags, load_config
from tuneforge.config.root import SECTIONS, TuneforgeConfig, field_index, field_info

__all__ = [
    "SECTIONS",
    "TuneforgeConfig",
    "config_from_file_or_flags",
    "field_index",
    "field_info",
    "load_config",
]
