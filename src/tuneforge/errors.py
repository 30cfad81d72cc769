"""Errors a user can act on. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations


class TuneforgeError(Exception):
    """Base class for problems caused by the user's input (config, data, paths), not by a bug."""

    exit_code = 2


class ConfigError(TuneforgeError):
    """The configuration is invalid: unknown key, wrong value, contradiction, bad path or YAML syntax."""


class DataError(TuneforgeError):
    """A dataset cannot be loaded or processed; the message names the dataset and row or line."""


class NotBuiltError(TuneforgeError):
    """A verb or feature that is planned but not implemented yet."""
