"""The recipe shared by the Trainer-based alignment stages (rm, dpo, kto, grpo), top to bottom.

Each stage supplies a `StagePlan`: its collator, its loss (a callable `loss(model, batch) -> tensor` that records
metrics in a `MetricStore`), extra callbacks, extra keys to plot and what to save beside the model. Everything
else (arguments, resume, data, model + adapters, the Trainer, checkpoints, logs, plots) is the sft recipe's.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback, set_seed

from tuneforge.errors import DataError, TuneforgeError
from tuneforge.models.adapters import apply_finetuning
from tuneforge.models.loader import load_model, load_tokenizer
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.args import build_training_args
from tuneforge.train.callbacks import LOG_NAME, GracefulStop, LogCallback
from tuneforge.train.modes import effective_tokens_per_sec, trainer_callbacks
from tuneforge.train.plot import plot_losses
from tuneforge.train.sft import (
    attach_chat_template,
    loraplus_factory,
    method_identity,
    save_resolved_config,
    unwrap_model,
    use_own_progress_bar,
)
from tuneforge.train.trainer import TuneforgeTrainer

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

# The data each stage needs: the processing kind, the feature that proves it, and what to give instead.
STAGE_DATA = {
    "rm": ("pairwise", "chosen_input_ids", "preference data (`ranking: true` with chosen/rejected)"),
    "dpo": ("pairwise", "chosen_input_ids", "preference data (`ranking: true` with chosen/rejected)"),
    "kto": ("kto", "kto_tags", "KTO data (a boolean `kto_tag` column mapped in dataset_info.json)"),
    "ppo": ("unsupervised", "input_ids", "prompts (any sft or preference dataset)"),
    "grpo": ("unsupervised", "input_ids", "prompts (any sft or preference dataset)"),
}


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


@dataclass
class StagePlan:
    """What a stage adds to the common recipe."""

    collator: Any
    loss: Callable[[Any, dict[str, Any]], torch.Tensor]
    metrics: MetricStore
    callbacks: list[Any] = field(default_factory=list)
    plot_keys: tuple[str, ...] = ()
    save_extra: Callable[[Any, Path], None] | None = None
    resume_extra: Callable[[Any, str], None] | None = None


StageBuilder = Callable[["TuneforgeConfig", Any, Any], StagePlan]


def run_stage(cfg: TuneforgeConfig, build: StageBuilder, tokenizer: Any = None) -> dict[str, Any]:
    """Train `cfg.method.stage` with the plan `build(cfg, model, tokenizer)` returns; outputs go to output_dir."""
    args, notes = build_training_args(cfg, cuda=torch.cuda.is_available())
    for note in notes:
        logger.warning(note)
    args.remove_unused_columns = False  # pairwise / KTO / prompt columns are not model arguments
    out = Path(args.output_dir)
    resume = ckpt.resolve_resume(str(out), cfg.training.resume_from_checkpoint, cfg.training.overwrite_output_dir)

    set_seed(args.seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
    train, evals, template = stage_data(cfg, tokenizer)
    attach_chat_template(tokenizer, template)
    model = load_model(cfg, tokenizer, trainable=True)
    model = apply_finetuning(model, cfg, trainable=True)
    plan = build(cfg, model, tokenizer)
    if resume and plan.resume_extra is not None:
        plan.resume_extra(model, resume)

    fingerprint = ckpt.fingerprint(cfg.model.model_name_or_path, method_identity(cfg), _hashable(train))
    _start_log(out, resume, fingerprint)
    save_resolved_config(cfg, out)
    trainer = TuneforgeTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        data_collator=plan.collator,
        processing_class=tokenizer,
        callbacks=[
            MetricsCallback(plan.metrics),
            LogCallback(str(out)),
            GracefulStop(),
            *plan.callbacks,
            *trainer_callbacks(cfg),
        ],
        fingerprint=fingerprint,
        optimizer_factory=loraplus_factory(cfg),
        loss_fn=plan.loss,
    )
    use_own_progress_bar(trainer)
    result = trainer.train(resume_from_checkpoint=resume)
    effective_tokens_per_sec(cfg, train, result.metrics)
    return _finish(cfg, trainer, model, plan, result, evals is not None and args.do_eval)


def stage_data(cfg: TuneforgeConfig, tokenizer: Any) -> tuple[Any, Any, Any]:
    """(train, eval, template) for the stage, or a clear error when the datasets are of the wrong kind."""
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.data.streaming import no_rows

    stage = cfg.method.stage
    _, column, wanted = STAGE_DATA[stage]
    splits = prepare_dataset(cfg, tokenizer, stage=stage)
    if no_rows(splits.train):
        raise TuneforgeError("No training rows: set `dataset` (the data report above says why rows were dropped).")
    if column not in splits.train.column_names:
        raise DataError(
            f"`stage: {stage}` needs {wanted}, but `dataset: {cfg.data.dataset}` gave columns "
            f"{', '.join(splits.train.column_names)}. Pick a dataset of that kind."
        )
    return splits.train, splits.eval, splits.template


def _hashable(train: Any) -> Any:
    """The dataset as `checkpoint.dataset_hash` reads it (pairwise rows hash their chosen sequences)."""
    if "input_ids" in train.column_names:
        return train
    return train.select_columns(["chosen_input_ids"]).rename_column("chosen_input_ids", "input_ids")


def _start_log(out: Path, resume: str | None, fingerprint: dict[str, str]) -> None:
    if resume:
        ckpt.check_fingerprint(resume, fingerprint)
        ckpt.trim_log(out / LOG_NAME, ckpt.checkpoint_step(resume))
    elif (out / LOG_NAME).exists():
        (out / LOG_NAME).unlink()
    out.mkdir(parents=True, exist_ok=True)
    ckpt.clear_staging(out)


def _finish(cfg: TuneforgeConfig, trainer: Any, model: Any, plan: StagePlan, result: Any, has_eval: bool) -> dict:
    out = Path(trainer.args.output_dir)
    unwrap_model(model).config.use_cache = True
    metrics = dict(result.metrics)
    if has_eval:
        eval_metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if plan.save_extra is not None:
        plan.save_extra(model, out)  # before save_model: it may detach modules that are not the causal LM
    trainer.save_model()
    trainer.save_state()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    if cfg.training.plot_loss and trainer.is_world_process_zero():
        plot_losses(out, extra_keys=plan.plot_keys)
    return metrics


def load_frozen(
    cfg: TuneforgeConfig, tokenizer: Any, path: str, adapters: str | None, bits: int | None
) -> torch.nn.Module:
    """A frozen eval-mode causal LM: `path` (+ merged `adapters`), optionally quantized to `bits`."""
    from tuneforge.infer.loading import apply_adapters

    model_section = cfg.model.model_copy(update={"model_name_or_path": path, "adapter_name_or_path": None})
    quant = cfg.quantization.model_copy(update={"quantization_bit": bits})
    sub = cfg.model_copy(update={"model": model_section, "quantization": quant})
    model = load_model(sub, tokenizer, trainable=False)
    names = [a.strip() for a in (adapters or "").split(",") if a.strip()]
    model = apply_adapters(model, names, keep_last=bits is not None)
    model.requires_grad_(False)
    return model.eval()


def load_reference(cfg: TuneforgeConfig, model: Any, tokenizer: Any) -> torch.nn.Module | None:
    """The reference model: `ref_model` if set; None for LoRA (the policy with its adapter disabled); else a
    frozen copy of the base model."""
    r = cfg.rlhf
    if r.ref_model:
        logger.info("Reference model: %s", r.ref_model)
        return load_frozen(cfg, tokenizer, r.ref_model, r.ref_model_adapters, r.ref_model_quantization_bit)
    if hasattr(model, "disable_adapter"):
        logger.info("Reference model: the base model (the policy with its adapter disabled)")
        return None
    logger.info("Reference model: a frozen copy of %s", cfg.model.model_name_or_path)
    adapters = cfg.model.adapter_name_or_path
    return load_frozen(cfg, tokenizer, cfg.model.model_name_or_path, adapters, r.ref_model_quantization_bit)


def reference_logits(model: Any, ref: Any, **inputs: Any) -> torch.Tensor:
    """Logits of the reference for `inputs`, without gradients (the policy with adapters off when `ref` is None)."""
    with torch.no_grad():
        if ref is not None:
            device = inputs["input_ids"].device
            if next(ref.parameters()).device != device and not getattr(ref, "is_quantized", False):
                ref.to(device)
            return ref(**inputs).logits
        policy = getattr(model, "module", model)
        with policy.disable_adapter():
            return policy(**inputs).logits
