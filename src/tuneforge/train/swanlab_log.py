"""SwanLab experiment tracking (`use_swanlab`, `swanlab_*`) through the optional `swanlab` package.

`swanlab_mode: local` keeps everything in `swanlab_logdir` (view it with `swanlab watch`, which needs
`swanlab[dashboard]`); `cloud` uploads to SwanLab, logging in with `swanlab_api_key` when given (else the
SWANLAB_API_KEY environment variable or an earlier `swanlab login`). A Lark (Feishu) webhook gets run notifications.
At the start of training `output_dir/swanlab_public_config.json` records where the run went.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

PUBLIC_CONFIG = "swanlab_public_config.json"
TAGS = ["tuneforge"]


def _run_record(run: Any) -> dict[str, Any]:
    """What the run says about itself: id, name, mode, folder and (cloud) URL."""
    record = {}
    for key in ("id", "name", "mode", "url", "dir"):
        try:
            value = getattr(run, key, None)
        except Exception:  # a property of a half-started run: the record is best effort
            value = None
        if value is not None:
            record[key] = str(value)
    return record


def _active_run() -> Any:
    import swanlab

    try:
        return swanlab.get_run()
    except RuntimeError:  # no run started
        return None


def swanlab_callbacks(cfg: TuneforgeConfig) -> list[TrainerCallback]:
    """[the SwanLab Trainer callback] when `use_swanlab` is set, else []."""
    t = cfg.swanlab
    if not t.use_swanlab:
        return []
    import swanlab
    from swanlab.integration.transformers import SwanLabCallback

    if t.swanlab_api_key is not None:
        swanlab.login(api_key=t.swanlab_api_key)
    plugins = []
    if t.swanlab_lark_webhook_url is not None:
        from swanlab.plugin.notification import LarkCallback

        plugins.append(LarkCallback(webhook_url=t.swanlab_lark_webhook_url, secret=t.swanlab_lark_secret))
    start = {
        "project": t.swanlab_project,
        "workspace": t.swanlab_workspace,
        "experiment_name": t.swanlab_run_name,
        "mode": t.swanlab_mode,
        "log_dir": t.swanlab_logdir,
        "tags": TAGS,
    }
    start = {key: value for key, value in start.items() if value is not None}

    class SwanLabTracking(SwanLabCallback):
        """SwanLab's own Trainer callback, started with the notification plugins, recording the run's place."""

        def setup(self, args: Any, state: Any, model: Any = None) -> None:
            if not state.is_world_process_zero:
                return
            if plugins and _active_run() is None:
                swanlab.init(callbacks=[self, *plugins], **start)
            super().setup(args, state, model)
            record = _run_record(_active_run())
            Path(args.output_dir, PUBLIC_CONFIG).write_text(json.dumps(record, indent=2), encoding="utf-8")

    if t.swanlab_mode == "local" and importlib.util.find_spec("swanboard") is None:
        logger.warning(
            "`swanlab_mode: local` writes the logs to %s; viewing them with `swanlab watch` needs "
            "pip install 'swanlab[dashboard]' (SwanLab reports the missing swanboard package as an error).",
            t.swanlab_logdir or "./swanlog",
        )
    logger.info("Logging to SwanLab (%s mode, project %s)", t.swanlab_mode, t.swanlab_project)
    return [SwanLabTracking(**start)]
