"""Benchmark evaluation with `tuneforge eval` (MMLU-style multiple choice)."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class EvaluationSection(Section):
    """Benchmark evaluation with `tuneforge eval` (MMLU-style multiple choice)."""

    task: str | None = F(None, "")
    task_dir: str = F('evaluation', "")
    batch_size: int = F(4, "")
    lang: Literal['en', 'zh'] = F('en', "")
    n_shot: int = F(5, "")
    save_dir: str | None = F(None, "")
    download_mode: Literal['reuse_dataset_if_exists', 'reuse_cache_if_exists', 'force_redownload'] = F('reuse_dataset_if_exists', "")
