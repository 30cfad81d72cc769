"""`tuneforge eval`: run lm-evaluation-harness on the configured model, print tables, write results.json.

With `compare_with`, a second model (the base without adapters, or another model) is evaluated on the same plan
and the tables show both scores and the difference per task and category.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.eval.plan import EvalPlan, build_plan, require_lm_eval
from tuneforge.eval.report import TaskScores, deltas, render, task_scores, to_json

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".gguf")


def eval_command(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Evaluate as the config says; print the tables and return what results.json holds."""
    require_lm_eval()
    plan = build_plan(cfg)
    if cfg.inference.infer_backend != "huggingface":
        raise ConfigError(
            f"`tuneforge eval` scores with the huggingface backend (log-likelihoods need the model's logits); "
            f"remove `infer_backend: {cfg.inference.infer_backend}`."
        )
    base_cfg = compare_config(cfg)
    print(f"chat template: {_template_note(cfg, plan)}", flush=True)
    tuned_out, tuned = evaluate(cfg, plan)
    base_out, base = evaluate(base_cfg, plan) if base_cfg is not None else (None, None)
    heading = f"{cfg.model.model_name_or_path} (adapters: {cfg.model.adapter_name_or_path or 'none'})"
    if base_cfg is not None:
        heading += f" vs {_describe(base_cfg)}"
    print(render(tuned, heading, base), flush=True)
    record = results_record(cfg, plan, tuned_out, tuned, base_cfg, base_out, base)
    if cfg.evaluation.save_dir:
        path = Path(cfg.evaluation.save_dir) / RESULTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        print(f"results written to {path}", flush=True)
    return record


def compare_config(cfg: TuneforgeConfig) -> TuneforgeConfig | None:
    """The config of the model to compare with (`compare_with`), or None."""
    target = cfg.evaluation.compare_with
    if not target:
        return None
    other = cfg.model_copy(deep=True)
    other.model.adapter_name_or_path = None
    if target == "base":
        if not cfg.model.adapter_name_or_path:
            raise ConfigError(
                "`compare_with: base` compares against the model without its adapters, but `adapter_name_or_path` "
                "is not set; name the base model folder in `compare_with` instead."
            )
    else:
        other.model.model_name_or_path = target
    return other


def _describe(cfg: TuneforgeConfig) -> str:
    return f"{cfg.model.model_name_or_path} (adapters: {cfg.model.adapter_name_or_path or 'none'})"


def _template_note(cfg: TuneforgeConfig, plan: EvalPlan) -> str:
    if not plan.apply_chat_template:
        return "not applied (plain task text; set `apply_chat_template: true` to format with the template)"
    return f"applied ({cfg.data.template or 'the tokenizer’s own'})"


def evaluate(cfg: TuneforgeConfig, plan: EvalPlan) -> tuple[dict[str, Any], list[TaskScores]]:
    """lm-eval's output for one model, and its scores per requested task."""
    from lm_eval import simple_evaluate

    from tuneforge.eval.lm import TuneforgeLM
    from tuneforge.infer import load_engine

    manager = task_manager(plan)
    unknown = [name for name in plan.tasks if name not in manager.all_tasks]
    if unknown:
        where = f" or in task_dir {plan.include_path}" if plan.include_path else " (set `task_dir` for local tasks)"
        raise ConfigError(f"Unknown lm-eval task(s) {', '.join(unknown)}: not in lm-eval{where}.")
    tags = [name for name in plan.tasks if name in manager.all_tags and name not in manager.all_groups]
    if tags:
        raise ConfigError(
            f"{', '.join(tags)}: an lm-eval tag (a set of tasks without a combined score); name its tasks or a group."
        )
    ecfg = cfg.model_copy(deep=True)
    ecfg.server.max_batch_size, ecfg.server.max_queue_size = plan.batch_size, 1 << 20
    engine = load_engine(ecfg)
    try:
        out = simple_evaluate(
            model=TuneforgeLM(engine, plan.batch_size, progress_dir=cfg.evaluation.save_dir),
            tasks=list(plan.tasks),
            num_fewshot=plan.num_fewshot,
            batch_size=plan.batch_size,
            limit=plan.limit,
            bootstrap_iters=0,
            log_samples=False,
            apply_chat_template=plan.apply_chat_template,
            fewshot_as_multiturn=plan.apply_chat_template,
            task_manager=manager,
            random_seed=plan.seed,
            numpy_random_seed=plan.seed,
            torch_random_seed=plan.seed,
            fewshot_random_seed=plan.seed,
        )
    finally:
        engine.close()
    if out is None:
        raise TuneforgeError("lm-eval returned no results.")
    return out, [task_scores(out, name) for name in plan.tasks]


def task_manager(plan: EvalPlan) -> Any:
    """lm-eval's task index: `task_dir` alone when it defines every task (fast, offline), else with lm-eval's own."""
    from lm_eval.tasks import TaskManager

    if plan.include_path:
        local = TaskManager(include_path=plan.include_path, include_defaults=False)
        if all(name in local.all_tasks for name in plan.tasks):
            return local
    return TaskManager(include_path=plan.include_path)


def results_record(
    cfg: TuneforgeConfig,
    plan: EvalPlan,
    out: dict[str, Any],
    scores: list[TaskScores],
    base_cfg: TuneforgeConfig | None,
    base_out: dict[str, Any] | None,
    base: list[TaskScores] | None,
) -> dict[str, Any]:
    """What results.json holds: scores, exact config, hashes, versions (and the comparison)."""
    from lm_eval import __version__ as lm_eval_version

    from tuneforge.version import __version__

    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tuneforge_version": __version__,
        "lm_eval_version": lm_eval_version,
        "config": cfg.flat(),
        "lm_eval_run": {**plan.__dict__, "tasks": list(plan.tasks)},
        "chat_template_applied": plan.apply_chat_template,
        "model": model_identity(cfg),
        "scores": to_json(scores),
        "task_versions": out.get("versions", {}),
        "n_samples": out.get("n-samples", {}),
        "lm_eval_results": out.get("results", {}),
    }
    if base_cfg is not None and base is not None and base_out is not None:
        record["comparison"] = {
            "model": model_identity(base_cfg),
            "scores": to_json(base),
            "delta": deltas(base, scores),
        }
    return record


def model_identity(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Model and adapter paths with the SHA-256 of their files (None for a Hub id not on disk)."""
    return {
        "model_name_or_path": cfg.model.model_name_or_path,
        "model_sha256": folder_hash(cfg.model.model_name_or_path or ""),
        "adapters": [{"path": p, "sha256": folder_hash(p)} for p in cfg.model.adapters],
    }


def folder_hash(path: str) -> str | None:
    """SHA-256 over the names and bytes of a model folder's weight, config and tokenizer files."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        digest.update(file.name.encode("utf-8") + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
