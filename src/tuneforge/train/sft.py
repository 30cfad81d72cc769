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

from tuneforge.models.adapters import apply_finetuning, build_loraplus_optimizer
from tuneforge.models.loader import load_model, load_tokenizer
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.args import build_training_args
from tuneforge.train.callbacks import LOG_NAME, LogCallback, ProgressCallback
from tuneforge.train.plot import plot_losses
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


def run_sft(cfg: TuneforgeConfig, data: TrainData | None = None, tokenizer: Any = None) -> dict[str, Any]:
    """Train stage pt or sft as `cfg` says and write every output to `output_dir`; returns the final metrics.

    `data` replaces the dataset pipeline and `tokenizer` the tokenizer load (tests pass hand-made ones).
    """
    cuda = torch.cuda.is_available()
    args, notes = build_training_args(cfg, cuda=cuda)
    for note in notes:
        logger.warning(note)
    out = Path(args.output_dir)
    resume = ckpt.resolve_resume(str(out), cfg.training.resume_from_checkpoint, cfg.training.overwrite_output_dir)

    set_seed(args.seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
    attach_chat_template(cfg, tokenizer)
    data = data or prepare_data(cfg, tokenizer)
    model = load_model(cfg, tokenizer, trainable=True)
    model = apply_finetuning(model, cfg, trainable=True)

    fingerprint = ckpt.fingerprint(cfg.model.model_name_or_path, _method_identity(cfg), data.train)
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
        callbacks=[LogCallback(str(out))],
        compute_metrics=token_accuracy if cfg.training.compute_accuracy and data.eval is not None else None,
        preprocess_logits_for_metrics=logits_to_predictions if cfg.training.compute_accuracy else None,
        fingerprint=fingerprint,
        optimizer_factory=_loraplus_factory(cfg),
    )
    _use_own_progress_bar(trainer)
    result = trainer.train(resume_from_checkpoint=resume)

    _unwrap(model).config.use_cache = True  # the saved model generates with a KV cache
    trainer.save_model()
    trainer.save_state()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    metrics = dict(result.metrics)
    if data.eval is not None:
        eval_metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if cfg.training.plot_loss and trainer.is_world_process_zero():
        plot_losses(out)
    return metrics


def prepare_data(cfg: TuneforgeConfig, tokenizer: Any) -> TrainData:
    """Tokenized train/eval datasets and collator from the data pipeline."""
    from tuneforge.data.pipeline import prepare_dataset

    prepared = prepare_dataset(cfg, tokenizer, stage=cfg.method.stage)
    if isinstance(prepared, TrainData):
        return prepared
    get = prepared.get if isinstance(prepared, dict) else lambda key: getattr(prepared, key, None)
    return TrainData(train=get("train"), eval=get("eval"), collator=get("collator"))


def attach_chat_template(cfg: TuneforgeConfig, tokenizer: Any) -> None:
    """Give the tokenizer the training template's Jinja so every runtime formats prompts the same way.

    Stops before training when the template does not fit the tokenizer (unless `allow_template_mismatch`).
    """
    if not cfg.data.template:
        return
    try:
        from tuneforge.data.templates import check_template_tokenizer, get_template
    except ImportError:  # the template registry is not available in this build
        logger.warning("Template registry unavailable; keeping the tokenizer's own chat template.")
        return
    template = get_template(cfg.data.template, tokenizer)
    if not cfg.data.allow_template_mismatch:
        check_template_tokenizer(template, tokenizer)
    jinja = template.to_jinja() if hasattr(template, "to_jinja") else None
    if jinja:
        tokenizer.chat_template = jinja


def save_resolved_config(cfg: TuneforgeConfig, out: Path) -> Path:
    """Write the keys the user set (after overrides) as `tuneforge_config.yaml`, re-runnable with `tuneforge train`."""
    path = out / CONFIG_NAME
    values = json.loads(json.dumps(cfg.flat(only_changed=True), default=str))
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _method_identity(cfg: TuneforgeConfig) -> dict[str, Any]:
    m = cfg.method
    keys = ("stage", "finetuning_type", "lora_rank", "lora_target", "additional_target", "oft_rank", "use_dora")
    return {k: getattr(m, k) for k in keys} | {"template": cfg.data.template, "cutoff_len": cfg.data.cutoff_len}


def _loraplus_factory(cfg: TuneforgeConfig) -> Any:
    if cfg.method.loraplus_lr_ratio is None:
        return None
    return lambda model, kwargs: build_loraplus_optimizer(model, cfg, kwargs)


def _use_own_progress_bar(trainer: Any) -> None:
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HfProgress

    trainer.remove_callback(HfProgress)
    if not trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(ProgressCallback())


def _unwrap(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model
