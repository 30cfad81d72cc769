"""SwanLab experiment tracking (LLaMA-Factory's `use_swanlab` and `swanlab_*` keys), read by train/swanlab_log.py."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section


class SwanlabSection(Section):
    """SwanLab experiment tracking (optional package: pip install 'tuneforge[swanlab]')."""

    use_swanlab: bool = F(
        False, "Log metrics to SwanLab (optional package: pip install 'tuneforge[swanlab]').", wiring=ACTS
    )
    swanlab_project: str | None = F(
        "llamafactory",
        "SwanLab: project name for the run.",
        wiring=ACTS,
    )
    swanlab_workspace: str | None = F(
        None,
        "SwanLab: workspace (user or organisation) that owns the project; unset uses your own.",
        wiring=ACTS,
    )
    swanlab_run_name: str | None = F(
        None,
        "SwanLab: experiment name; unset lets SwanLab pick one.",
        wiring=ACTS,
    )
    swanlab_mode: Literal["cloud", "local"] = F(
        "cloud",
        "SwanLab: upload to the cloud service, or local: keep the logs in swanlab_logdir only.",
        wiring=ACTS,
    )
    swanlab_api_key: str | None = F(
        None,
        "SwanLab: API key for logging in; prefer the SWANLAB_API_KEY environment variable.",
        wiring=ACTS,
    )
    swanlab_logdir: str | None = F(
        None,
        "SwanLab: folder for the run's log files; unset uses ./swanlog.",
        wiring=ACTS,
    )
    swanlab_lark_webhook_url: str | None = F(
        None,
        "SwanLab: Lark (Feishu) webhook URL that receives run notifications.",
        wiring=ACTS,
    )
    swanlab_lark_secret: str | None = F(
        None,
        "SwanLab: signing secret for the Lark (Feishu) webhook.",
        wiring=ACTS,
    )
