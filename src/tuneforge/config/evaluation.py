"""Benchmark evaluation with `tuneforge eval` (MMLU-style multiple choice)."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section


class EvaluationSection(Section):
    """Benchmark evaluation with `tuneforge eval` (MMLU-style multiple choice)."""

    task: str | None = F(
        None, "Benchmark to run, as `name_split` (e.g. mmlu_test, cmmlu_test, ceval_validation).", wiring=ACTS
    )
    task_dir: str = F("evaluation", "Folder holding the benchmark datasets.", wiring=ACTS)
    batch_size: int = F(4, "Number of prompts scored together per forward pass.", wiring=ACTS)
    lang: Literal["en", "zh"] = F("en", "Language of the few-shot prompt wording.", wiring=ACTS)
    n_shot: int = F(
        5, "Number of solved examples placed before each question (few-shot); 0 for zero-shot.", wiring=ACTS
    )
    save_dir: str | None = F(
        None, "Directory where per-subject predictions and scores are written; unset writes nothing.", wiring=ACTS
    )
    download_mode: Literal["reuse_dataset_if_exists", "reuse_cache_if_exists", "force_redownload"] = F(
        "reuse_dataset_if_exists",
        "Whether to reuse or re-download benchmark data, as in the datasets library's DownloadMode.",
        wiring=ACTS,
    )
