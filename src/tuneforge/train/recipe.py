"""The one Trainer recipe, top to bottom, that every Trainer-based stage (pt, sft, rm, dpo, kto, grpo) runs:

start log -> resume point -> tokenizer, data -> model + adapters -> Trainer -> train -> save -> evaluate -> finish.

A stage module states only what differs, as a `StageSpec`: its batch collator, whether the pt/sft speed paths
apply, and a `plan` (its loss, metrics, extra callbacks, plots, what it saves and restores beside the model).
The start / resume / finish pieces (`start_run`, `begin_log`, `finish_run`) are shared with PPO's own loop.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from transformers import TrainerCallback, TrainingArguments, set_seed

from tuneforge.config.stages import stage
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.models.adapters import apply_finetuning
from tuneforge.models.loader import load_model, load_tokenizer
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.args import build_training_args
from tuneforge.train.callbacks import LOG_NAME, GracefulStop, LogCallback, ProgressCallback
from tuneforge.train.dist import is_main_process, main_process_first
from tuneforge.train.fp8 import apply_fp8, check_fp8
from tuneforge.train.modes import effective_tokens_per_sec, trainer_callbacks
from tuneforge.train.optimizers import optimizer_factory, prepare_trainer
from tuneforge.train.plot import plot_losses
from tuneforge.train.speed.plan import SpeedPlan, plan_speed, prepare_model
from tuneforge.train.trainer import TuneforgeTrainer
from tuneforge.train.value_head import unwrap

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig
    from tuneforge.data.templates.template import Template

logger = logging.getLogger(__name__)

CONFIG_NAME = "tuneforge_config.yaml"


@dataclass
class TrainData:
    """Tokenized datasets (train, optional eval), the batch collator and the chat template they were built with."""

    train: Any
    eval: Any | None
    collator: Any
    template: Template | None = None


class MetricStore:
    """Running sums of per-batch metrics, split into train and eval, drained at each log."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def add(self, metrics: dict[str, Any], training: bool) -> None:
        """Record one batch's metrics (tensors or numbers)."""
        split = self._sums["train" if training else "eval"]
        for key, value in metrics.items():
            split[key].append(float(value.detach().float().mean()) if torch.is_tensor(value) else float(value))

    def pop(self, split: str) -> dict[str, float]:
        """Means since the last pop, then forget them."""
        values = self._sums[split]
        out = {key: sum(v) / len(v) for key, v in values.items() if v}
        values.clear()
        return out


class MetricsCallback(TrainerCallback):
    """Merge a `MetricStore`'s means into each train / eval log (before `LogCallback` writes it)."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs is None:
            return
        if "loss" in logs:
            logs.update(self.store.pop("train"))
        elif "eval_loss" in logs:
            logs.update({f"eval_{k}": v for k, v in self.store.pop("eval").items()})


SaveModel = Callable[[], None]


@dataclass
class StagePlan:
    """What a stage adds once its model is ready. Without `loss` the Trainer's causal-LM loss is used."""

    loss: Callable[[Any, dict[str, Any]], torch.Tensor] | None = None
    metrics: MetricStore | None = None
    callbacks: list[TrainerCallback] = field(default_factory=list)
    plot_keys: tuple[str, ...] = ()
    compute_metrics: Callable[[Any], dict[str, float]] | None = None
    preprocess_logits: Callable[[Any, Any], Any] | None = None
    compute_loss_func: Callable[..., torch.Tensor] | None = None  # the Trainer's hook over the model outputs
    save: Callable[[Any, Path, SaveModel], None] | None = None  # wraps the model save (e.g. the value head)
    resume_extra: Callable[[Any, str], None] | None = None


@dataclass(frozen=True)
class StageSpec:
    """A Trainer stage's differences from the common recipe."""

    collator: Callable[[TuneforgeConfig, Any], Any]  # (cfg, tokenizer) -> batch collator
    plan: Callable[[TuneforgeConfig, Any, Any], StagePlan] = lambda cfg, model, tokenizer: StagePlan()
    speed: bool = False  # the pt/sft paths: padding-free batches, fusion, token budgets, fused kernels, FP8
    model_columns_only: bool = False  # let the Trainer drop columns the model's forward does not take


@dataclass
class RunStart:
    """Arguments, output folder and resume point of a run (shared with PPO)."""

    args: TrainingArguments
    out: Path
    resume: str | None


def start_run(cfg: TuneforgeConfig) -> RunStart:
    """Training arguments (their notes logged), the output folder and the checkpoint to resume from."""
    args, notes = build_training_args(cfg, cuda=torch.cuda.is_available())
    for note in notes:
        logger.warning(note)
    out = Path(args.output_dir)
    resume = ckpt.resolve_resume(str(out), cfg.training.resume_from_checkpoint, cfg.training.overwrite_output_dir)
    return RunStart(args, out, resume)


def run_stage(
    cfg: TuneforgeConfig, spec: StageSpec, tokenizer: Any = None, data: TrainData | None = None
) -> dict[str, Any]:
    """Train `cfg.method.stage` as `spec` says and write every output to `output_dir`; returns the final metrics.

    `data` replaces the dataset pipeline and `tokenizer` the tokenizer load (tests pass hand-made ones).
    """
    cuda = torch.cuda.is_available()
    if spec.speed:
        check_fp8(cfg, cuda)  # FP8 stops here on hardware without it
    run = start_run(cfg)
    args = run.args
    args.remove_unused_columns = spec.model_columns_only and args.remove_unused_columns
    set_seed(args.seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
    data = data or stage_data(cfg, tokenizer, spec.collator)  # stops here when the template does not fit
    media = _has_media(data.train)
    if not media:  # a multimodal model keeps its processor's template: it renders image parts, the Jinja does not
        attach_chat_template(tokenizer, data.template)
    if media:  # the Trainer would drop the `images` column, which the model's forward does not name
        args.remove_unused_columns = False
    speed = plan_speed(cfg, args, data, cuda) if spec.speed and not media else SpeedPlan(cuda=cuda)
    model = load_model(cfg, tokenizer, trainable=True)
    if spec.speed:
        prepare_model(model, cfg, speed)  # varlen attention, fused kernels
    model = apply_finetuning(model, cfg, trainable=True)
    if spec.speed:
        model = apply_fp8(model, cfg)
    plan = spec.plan(cfg, model, tokenizer)
    if run.resume and plan.resume_extra is not None:
        plan.resume_extra(model, run.resume)

    fingerprint = ckpt.fingerprint(cfg.model.model_name_or_path, method_identity(cfg), _hashable(data.train))
    begin_log(cfg, run, fingerprint)
    trainer = TuneforgeTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=data.collator,
        processing_class=tokenizer,
        callbacks=[*_callbacks(run.out, plan), *trainer_callbacks(cfg)],
        compute_metrics=plan.compute_metrics if data.eval is not None else None,
        preprocess_logits_for_metrics=plan.preprocess_logits,
        fingerprint=fingerprint,
        optimizer_factory=optimizer_factory(cfg),
        loss_fn=plan.loss,
        train_batch_sampler=speed.batch_sampler,
        compute_loss_func=plan.compute_loss_func,
    )
    use_own_progress_bar(trainer)
    prepare_trainer(trainer, cfg)
    result = trainer.train(resume_from_checkpoint=run.resume)
    effective_tokens_per_sec(cfg, data.train, result.metrics)
    _save(trainer, model, plan, result.metrics)
    if media and trainer.is_world_process_zero():
        from tuneforge.data.media import copy_processor_files

        copy_processor_files(cfg.model.model_name_or_path, run.out)
    metrics = dict(result.metrics)
    if data.eval is not None and trainer.args.do_eval:  # as LLaMA-Factory: do_eval or an eval_strategy
        metrics.update(_evaluate(trainer))
    finish_run(cfg, run.out, plan.plot_keys, trainer.is_world_process_zero())
    return metrics


def stage_data(cfg: TuneforgeConfig, tokenizer: Any, collator: Callable[[Any, Any], Any] | None = None) -> TrainData:
    """(train, eval, collator, template) for the configured stage, or a clear error for data of the wrong kind."""
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.data.streaming import columns_of

    row = stage(cfg.method.stage)
    with main_process_first(cfg.data.data_shared_file_system):  # rank 0 (per node) builds the cache, others read it
        splits = prepare_dataset(cfg, tokenizer, kind=row.data_kind)
    columns = columns_of(splits.train)  # a streamed dataset shows its columns in its first row
    if not columns:
        raise TuneforgeError("No training rows: set `dataset` (the data report above says why rows were dropped).")
    if row.proof_column not in columns:
        raise DataError(
            f"`stage: {row.name}` needs {row.wanted}, but `dataset: {cfg.data.dataset}` gave columns "
            f"{', '.join(columns)}. Pick a dataset of that kind."
        )
    made = collator(cfg, tokenizer) if collator is not None else None
    if made is not None and "images" in columns:
        from tuneforge.data.media import media_collator

        made = media_collator(cfg.model, tokenizer, splits.template, made)
    return TrainData(train=splits.train, eval=splits.eval, collator=made, template=splits.template)


def begin_log(cfg: TuneforgeConfig, run: RunStart, fingerprint: dict[str, str]) -> None:
    """Check the resumed checkpoint fits, trim (or on a fresh run remove) the log, clear half-written checkpoints
    and write the resolved config."""
    out = run.out
    if run.resume:
        ckpt.check_fingerprint(run.resume, fingerprint)
        ckpt.trim_log(out / LOG_NAME, ckpt.checkpoint_step(run.resume))
    elif (out / LOG_NAME).exists() and is_main_process():
        (out / LOG_NAME).unlink()  # a fresh run (overwrite_output_dir) starts a fresh log
    out.mkdir(parents=True, exist_ok=True)
    ckpt.clear_staging(out)
    save_resolved_config(cfg, out)


def finish_run(cfg: TuneforgeConfig, out: Path, plot_keys: tuple[str, ...], main_process: bool = True) -> None:
    """The loss plots (and those of `plot_keys`) when `plot_loss`."""
    if cfg.training.plot_loss and main_process:
        plot_losses(out, extra_keys=plot_keys)


def _callbacks(out: Path, plan: StagePlan) -> list[TrainerCallback]:
    metrics = [MetricsCallback(plan.metrics)] if plan.metrics is not None else []
    return [*metrics, LogCallback(str(out)), GracefulStop(), *plan.callbacks]


def _save(trainer: TuneforgeTrainer, model: Any, plan: StagePlan, train_metrics: dict[str, Any]) -> None:
    unwrap(model).config.use_cache = True  # the saved model generates with a KV cache
    if plan.save is not None:
        plan.save(model, Path(trainer.args.output_dir), trainer.save_model)
    else:
        trainer.save_model()
    trainer.save_state()
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)


def _evaluate(trainer: TuneforgeTrainer) -> dict[str, Any]:
    metrics = trainer.evaluate(metric_key_prefix="eval")
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


def _has_media(train: Any) -> bool:
    from tuneforge.data.streaming import columns_of

    return "images" in columns_of(train)


def _hashable(train: Any) -> Any:
    """The dataset as `checkpoint.dataset_hash` reads it (pairwise rows hash their chosen sequences)."""
    from tuneforge.data.streaming import columns_of

    if "input_ids" in columns_of(train):
        return train
    return train.select_columns(["chosen_input_ids"]).rename_column("chosen_input_ids", "input_ids")


def attach_chat_template(tokenizer: Any, template: Template | None) -> None:
    """Give the tokenizer the training template's Jinja so every runtime formats prompts the same way."""
    jinja = template.to_jinja() if template is not None and hasattr(template, "to_jinja") else None
    if jinja:
        tokenizer.chat_template = jinja


def save_resolved_config(cfg: TuneforgeConfig, out: Path) -> Path:
    """Write the keys the user set (after overrides) as `tuneforge_config.yaml`, re-runnable with `tuneforge train`."""
    path = out / CONFIG_NAME
    if not is_main_process():
        return path
    values = json.loads(json.dumps(cfg.flat(only_changed=True), default=str))
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def method_identity(cfg: TuneforgeConfig) -> dict[str, Any]:
    """The method keys that change what a checkpoint means; part of the resume fingerprint."""
    m = cfg.method
    keys = ("stage", "finetuning_type", "lora_rank", "lora_target", "additional_target", "oft_rank", "use_dora")
    return {k: getattr(m, k) for k in keys} | {"template": cfg.data.template, "cutoff_len": cfg.data.cutoff_len}


def use_own_progress_bar(trainer: TuneforgeTrainer) -> None:
    """Replace the Trainer's tqdm bar with tuneforge's (loss, tokens/s, ETA) unless tqdm is disabled."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HfProgress

    trainer.remove_callback(HfProgress)
    if not trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(ProgressCallback())


def pad_multiple() -> int | None:
    """Pad batches to a multiple of 8 on CUDA (tensor cores), not on CPU."""
    return 8 if torch.cuda.is_available() else None
