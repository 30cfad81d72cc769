"""An evaluation-only run (`do_eval` without `do_train`): the model plus its adapters on the evaluation data,
metrics written, no weights. Its own module so that train/modes.py, which the recipe imports, needs no stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)


def run_eval_only(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Evaluate the model (plus `adapter_name_or_path`) on the evaluation data; writes metrics, no weights."""
    import torch

    from tuneforge.data.media import MediaCollator
    from tuneforge.models.adapters import apply_finetuning
    from tuneforge.models.loader import load_model, load_tokenizer
    from tuneforge.train.args import build_training_args
    from tuneforge.train.trainer import TuneforgeTrainer, logits_to_predictions, token_accuracy

    args, notes = build_training_args(cfg, cuda=torch.cuda.is_available())
    for note in notes:
        logger.warning(note)
    tokenizer = load_tokenizer(cfg)
    evals, collator = _eval_data(cfg, tokenizer)
    if isinstance(collator, MediaCollator):  # keep the `images` column the model's forward does not name
        args.remove_unused_columns = False
    model = apply_finetuning(load_model(cfg, tokenizer, trainable=False), cfg, trainable=False)
    accuracy = cfg.training.compute_accuracy
    trainer = TuneforgeTrainer(
        model=model,
        args=args,
        eval_dataset=evals,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=token_accuracy if accuracy else None,
        preprocess_logits_for_metrics=logits_to_predictions if accuracy else None,
    )
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    metrics = trainer.evaluate(metric_key_prefix="eval")
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


def _eval_data(cfg: TuneforgeConfig, tokenizer: Any) -> tuple[Any, Any]:
    """The tokenized evaluation split (labelled rows, as for training) and its collator."""
    from tuneforge.data.media import media_collator
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.train.sft import sft_collator

    splits = prepare_dataset(cfg, tokenizer)  # the stage's labelled rows, as for training
    if splits.eval is None or len(splits.eval) == 0:
        raise ConfigError("No evaluation rows: set `eval_dataset` (or `val_size`); the data report above says why.")
    collator = sft_collator(cfg, tokenizer)
    first = next(iter(splits.eval.values())) if isinstance(splits.eval, dict) else splits.eval
    if "images" in first.column_names:
        collator = media_collator(cfg.model, tokenizer, splits.template, collator)
    return splits.eval, collator
