"""Benchmark evaluation with `tuneforge eval`, through lm-evaluation-harness (the `eval` extra)."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section, no_op


class EvaluationSection(Section):
    """Benchmark evaluation with `tuneforge eval`, through lm-evaluation-harness (the `eval` extra)."""

    tasks: str | None = F(
        None,
        "lm-evaluation-harness tasks or groups to run, comma-separated (e.g. `mmlu,cmmlu,ceval-valid,gsm8k`); "
        "tasks defined in `task_dir` are found by name too. Used together with `task`, both run.",
        lf_default=None,
        wiring=ACTS,
    )
    task: str | None = F(
        None,
        "LLaMA-Factory's benchmark key `name_split`: mmlu_test, cmmlu_test and ceval_validation run lm-eval's "
        "mmlu, cmmlu and ceval-valid; another `name_test` / `name_validation` runs the lm-eval task `name` "
        "(e.g. one defined in `task_dir`).",
        wiring=ACTS,
    )
    task_dir: str = F(
        "evaluation",
        "Folder of local lm-eval task definitions (YAML files, with their data files) searched before the "
        "built-in tasks, so evaluation runs offline; the default is used only when the folder exists.",
        wiring=ACTS,
    )
    batch_size: int = F(4, "Number of prompts scored together per forward pass.", ge=1, wiring=ACTS)
    lang: Literal["en", "zh"] = F(
        "en",
        "Language of the few-shot prompt wording. lm-eval's tasks carry their own wording (mmlu English, cmmlu "
        "and ceval Chinese): with `task`, a language other than the benchmark's is refused; with other tasks "
        "setting it only warns that it has no effect.",
        wiring=ACTS,
    )
    n_shot: int = F(
        5, "Number of solved examples placed before each question (few-shot); 0 for zero-shot.", ge=0, wiring=ACTS
    )
    save_dir: str | None = F(
        None,
        "Folder that receives results.json (scores per task and category, the exact config, model and adapter "
        "hashes, lm-eval and task versions); unset writes nothing.",
        wiring=ACTS,
    )
    download_mode: Literal["reuse_dataset_if_exists", "reuse_cache_if_exists", "force_redownload"] = F(
        "reuse_dataset_if_exists",
        "LLaMA-Factory's choice to reuse or re-download benchmark data. lm-eval loads each task's data itself "
        "and reuses what is downloaded, so another value only warns; to re-download, clear the datasets cache.",
        wiring=no_op("lm-eval loads and reuses each task's data itself; clear the datasets cache to re-download"),
    )
    apply_chat_template: bool = F(
        False,
        "Format each question (and its few-shot examples) with the model's chat template (`template`) before "
        "scoring; off scores the plain task text. The output says which was used.",
        lf_default=None,
        wiring=ACTS,
    )
    eval_limit: int | None = F(
        None,
        "Evaluate at most this many questions per task (a quick check, not a benchmark figure); unset runs all.",
        lf_default=None,
        ge=1,
        wiring=ACTS,
    )
    compare_with: str | None = F(
        None,
        "Also evaluate another model and print the score difference per task and category: `base` is "
        "`model_name_or_path` without `adapter_name_or_path`; anything else is a model folder or Hub id.",
        lf_default=None,
        wiring=ACTS,
    )
