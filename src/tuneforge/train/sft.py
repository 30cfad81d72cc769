"""The pt and sft recipe, top to bottom: args, resume point, tokenizer, data, model, method, Trainer, outputs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from transformers import set_seed

from tuneforge.errors import TuneforgeError
from tuneforge.models.adapters import apply_finetuning, build_loraplus_optimizer, pissa_callbacks
from tuneforge.models.loader import load_model, load_tokenizer
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.args import build_training_args
from tuneforge.train.callbacks import LOG_NAME, GracefulStop, LogCallback, ProgressCallback
from tuneforge.train.fp8 import apply_fp8, check_fp8
from tuneforge.train.modes import effective_tokens_per_sec, trainer_callbacks
from tuneforge.train.plot import plot_losses
from tuneforge.train.sft_losses import sft_loss_func
from tuneforge.train.speed.plan import plan_speed, prepare_model
from tuneforge.train.trainer import TuneforgeTrainer, logits_to_predictions, token_accuracy

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

CONFIG_NAME = "tuneforge_config.yaml"


@dataclass
class TrainData:
    """Tokenized datasets (rows of input_ids / labels, + position_ids when packed) and the batch collator."""

    train: Any
    eval: Any | None
    collator: Any
    template: Any | None = None


def run_sft(cfg: TuneforgeConfig, data: TrainData | None = None, tokenizer: Any = None) -> dict[str, Any]:
    """Train stage pt or sft as `cfg` says and write every output to `output_dir`; returns the final metrics.

    `data` replaces the dataset pipeline and `tokenizer` the tokenizer load (tests pass hand-made ones).
    """
    cuda = torch.cuda.is_available()
    check_fp8(cfg, cuda)  # FP8 stops here on hardware without it
    args, notes = build_training_args(cfg, cuda=cuda)
    for note in notes:
        logger.warning(note)
    out = Path(args.output_dir)
    resume = ckpt.resolve_resume(str(out), cfg.training.resume_from_checkpoint, cfg.training.overwrite_output_dir)

    set_seed(args.seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
    data = data or prepare_data(cfg, tokenizer)  # stops here when the template does not fit the tokenizer
    attach_chat_template(tokenizer, data.template)
    speed = plan_speed(cfg, args, data, cuda)  # padding-free batches, fusion, token budgets
    model = load_model(cfg, tokenizer, trainable=True)
    prepare_model(model, cfg, speed)  # varlen attention, fused kernels
    model = apply_fp8(apply_finetuning(model, cfg, trainable=True), cfg)

    fingerprint = ckpt.fingerprint(cfg.model.model_name_or_path, method_identity(cfg), data.train)
    if resume:
        ckpt.check_fingerprint(resume, fingerprint)
        ckpt.trim_log(out / LOG_NAME, ckpt.checkpoint_step(resume))
    elif (out / LOG_NAME).exists():
        (out / LOG_NAME).unlink()  # a fresh run (overwrite_output_dir) starts a fresh log
    out.mkdir(parents=True, exist_ok=True)
    ckpt.clear_staging(out)
    save_resolved_config(cfg, out)

    trainer = TuneforgeTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=data.collator,
        processing_class=tokenizer,
        callbacks=[LogCallback(str(out)), GracefulStop(), *pissa_callbacks(cfg), *trainer_callbacks(cfg)],
        compute_metrics=token_accuracy if cfg.training.compute_accuracy and data.eval is not None else None,
        preprocess_logits_for_metrics=logits_to_predictions if cfg.training.compute_accuracy else None,
        fingerprint=fingerprint,
        optimizer_factory=loraplus_factory(cfg),
        train_batch_sampler=speed.batch_sampler,
        compute_loss_func=sft_loss_func(cfg, model, tokenizer),  # DFT / EAFT / ASFT, else the plain loss
    )
    use_own_progress_bar(trainer)
    result = trainer.train(resume_from_checkpoint=resume)
    effective_tokens_per_sec(cfg, data.train, result.metrics)

    unwrap_model(model).config.use_cache = True  # the saved model generates with a KV cache
    trainer.save_model()
    trainer.save_state()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    metrics = dict(result.metrics)
    if data.eval is not None and args.do_eval:  # as LLaMA-Factory: do_eval, or an eval_strategy
        eval_metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if cfg.training.plot_loss and trainer.is_world_process_zero():
        plot_losses(out)
    return metrics


def prepare_data(cfg: TuneforgeConfig, tokenizer: Any) -> TrainData:
    """Tokenized train/eval datasets from the data pipeline, the collator that fits them, and the template.

    Neat-packed rows (position ids restarting per sample) are collated padding-free into one row without an
    attention mask, so attention stays within each sample (varlen kernels on GPU, a block-diagonal mask on sdpa).
    """
    from tuneforge.data.collate import sft_collator
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.data.streaming import no_rows

    splits = prepare_dataset(cfg, tokenizer, stage=cfg.method.stage)
    if no_rows(splits.train):
        raise TuneforgeError("No training rows: set `dataset` (the data report above says why rows were dropped).")
    collator = sft_collator(cfg.data.neat_packing, tokenizer.pad_token_id, torch.cuda.is_available())
    return TrainData(train=splits.train, eval=splits.eval, collator=collator, template=splits.template)


def attach_chat_template(tokenizer: Any, template: Any) -> None:
    """Give the tokenizer the training template's Jinja so every runtime formats prompts the same way."""
    jinja = template.to_jinja() if template is not None and hasattr(template, "to_jinja") else None
    if jinja:
        tokenizer.chat_template = jinja


def save_resolved_config(cfg: TuneforgeConfig, out: Path) -> Path:
    """Write the keys the user set (after overrides) as `tuneforge_config.yaml`, re-runnable with `tuneforge train`."""
    path = out / CONFIG_NAME
    values = json.loads(json.dumps(cfg.flat(only_changed=True), default=str))
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def method_identity(cfg: TuneforgeConfig) -> dict[str, Any]:
    """The method keys that change what a checkpoint means; part of the resume fingerprint."""
    m = cfg.method
    keys = ("stage", "finetuning_type", "lora_rank", "lora_target", "additional_target", "oft_rank", "use_dora")
    return {k: getattr(m, k) for k in keys} | {"template": cfg.data.template, "cutoff_len": cfg.data.cutoff_len}


def loraplus_factory(cfg: TuneforgeConfig) -> Any:
    """An optimizer factory giving LoRA B matrices `loraplus_lr_ratio` times the learning rate, or None."""
    if cfg.method.loraplus_lr_ratio is None:
        return None
    return lambda model, kwargs: build_loraplus_optimizer(model, cfg, kwargs)


def use_own_progress_bar(trainer: Any) -> None:
    """Replace the Trainer's tqdm bar with tuneforge's (loss, tokens/s, ETA) unless tqdm is disabled."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HfProgress

    trainer.remove_callback(HfProgress)
    if not trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(ProgressCallback())


def unwrap_model(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
