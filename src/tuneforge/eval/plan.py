"""Turn the config's evaluation keys (tuneforge's and LLaMA-Factory's) into one lm-evaluation-harness run.

LLaMA-Factory names a benchmark as `name_split` (`mmlu_test`, `cmmlu_test`, `ceval_validation`); lm-eval names
tasks and groups (`mmlu`, `cmmlu`, `ceval-valid`). Both spellings resolve to the same `EvalPlan`, so a config
written for LLaMA-Factory runs the same lm-eval evaluation as one written with `tasks:`.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.config.require import require
from tuneforge.errors import ConfigError, TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

# LLaMA-Factory benchmark -> (lm-eval group, the split LF evaluates, the language of lm-eval's prompts)
LF_BENCHMARKS = {
    "mmlu": ("mmlu", "test", "en"),
    "cmmlu": ("cmmlu", "test", "zh"),
    "ceval": ("ceval-valid", "validation", "zh"),
}
_SPLITS = ("test", "validation")
INSTALL = "pip install 'tuneforge[eval]'"


@dataclass(frozen=True)
class EvalPlan:
    """Everything that decides an lm-eval run, besides the model."""

    tasks: tuple[str, ...]
    num_fewshot: int
    batch_size: int
    seed: int
    include_path: str | None
    apply_chat_template: bool
    limit: int | None


def require_lm_eval() -> None:
    """Stop with the install command when lm-evaluation-harness is missing."""
    if importlib.util.find_spec("lm_eval") is None:
        raise TuneforgeError(f"`tuneforge eval` runs benchmarks with lm-evaluation-harness: {INSTALL}.")


def lf_task(task: str, lang: str | None) -> str:
    """The lm-eval task for LLaMA-Factory's `task: name_split` (refused with what to write instead)."""
    name, _, split = task.rpartition("_")
    if not name or split not in _SPLITS:
        raise ConfigError(
            f"`task: {task}` is not `name_split` with split test or validation (e.g. mmlu_test, ceval_validation); "
            "or name lm-eval tasks with `tasks:`."
        )
    if name not in LF_BENCHMARKS:
        return name  # a task of that name in task_dir or lm-eval; its YAML names the split it scores
    group, lf_split, language = LF_BENCHMARKS[name]
    if split != lf_split:
        raise ConfigError(
            f"`task: {task}`: lm-eval's {group} scores the {lf_split} split; use `task: {name}_{lf_split}`."
        )
    if lang is not None and lang != language:
        raise ConfigError(
            f"`lang: {lang}` with `task: {task}`: lm-eval's {group} prompts are written in {language!r}; "
            f"set `lang: {language}` (or remove it), or write a task with your wording in `task_dir`."
        )
    return group


def task_names(cfg: TuneforgeConfig) -> tuple[str, ...]:
    """The lm-eval tasks of `tasks` and `task`, in order, without repeats."""
    e = cfg.evaluation
    names = [t.strip() for t in (e.tasks or "").split(",") if t.strip()]
    lang_set = "lang" in e.model_fields_set
    if e.task:
        names.append(lf_task(e.task.strip(), e.lang if lang_set else None))
    if lang_set and not (e.task and e.task.rpartition("_")[0] in LF_BENCHMARKS):
        logger.warning("`lang: %s` has no effect: lm-eval tasks carry their own prompt wording.", e.lang)
    if not names:
        raise ConfigError("Nothing to evaluate: set `tasks: mmlu` (any lm-eval task or group) or `task: mmlu_test`.")
    return tuple(dict.fromkeys(names))


def include_path(cfg: TuneforgeConfig) -> str | None:
    """`task_dir` when it exists; an explicitly set one that is missing is an error."""
    e = cfg.evaluation
    folder = Path(e.task_dir).expanduser()
    if folder.is_dir():
        return str(folder.resolve())
    if "task_dir" in e.model_fields_set:
        raise ConfigError(f"`task_dir: {e.task_dir}` is not a folder; point it at your lm-eval task YAML files.")
    return None


def build_plan(cfg: TuneforgeConfig) -> EvalPlan:
    """The lm-eval run the config describes (checked before any model is loaded)."""
    e = cfg.evaluation
    if e.download_mode != "reuse_dataset_if_exists":
        logger.warning(
            "`download_mode: %s` has no effect: lm-eval loads task data itself and reuses downloads; "
            "clear the datasets cache to download again.",
            e.download_mode,
        )
    require(cfg.model.model_name_or_path, "model_name_or_path", "the model to evaluate")
    return EvalPlan(
        tasks=task_names(cfg),
        num_fewshot=e.n_shot,
        batch_size=e.batch_size,
        seed=cfg.training.seed,
        include_path=include_path(cfg),
        apply_chat_template=e.apply_chat_template,
        limit=e.eval_limit,
    )
