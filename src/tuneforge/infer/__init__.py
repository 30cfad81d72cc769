"""The inference engine shared by chat, the API server, the web chat and evaluation.

`load_engine(cfg)` builds an `Engine`; heavy libraries load only when it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.infer.engine import Engine

__all__ = ["load_engine"]


def load_engine(cfg: Any, timing: Any = None) -> Engine:
    """The inference engine for a config; `timing` (a `tuneforge.timing.Breakdown`) records where loading went.

    See `tuneforge.infer.factory.load_engine`.
    """
    from tuneforge.infer.factory import load_engine as _load

    return _load(cfg, timing)
