"""Ray Train settings (LLaMA-Factory's `USE_RAY=1` launch)."""

from __future__ import annotations

from tuneforge.config.fields import ACTS, F, Section


class RaySection(Section):
    """Ray Train settings, read when the run starts with the environment variable USE_RAY=1."""

    ray_num_workers: int = F(
        1,
        "With USE_RAY=1: Ray Train workers (processes) that train together, one GPU each on a GPU cluster, one CPU "
        "process each (gloo) elsewhere. Without USE_RAY=1 it has no effect (a warning says so).",
        wiring=ACTS,
    )
    ray_init_kwargs: dict | str | None = F(
        None,
        "With USE_RAY=1: keyword arguments for ray.init(), as a dict or JSON string, e.g. "
        '`{"address": "auto"}` to join a running cluster or `{"num_cpus": 8}`; unset starts a local Ray.',
        wiring=ACTS,
    )
