"""The one Trainer subclass: atomic checkpoints, NaN/inf stop, custom optimizers. Plus token-accuracy metrics."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils.import_utils import is_torch_xla_available

from tuneforge.errors import TuneforgeError
from tuneforge.train.checkpoint import STAGING, publish
from tuneforge.train.dist import barrier
from tuneforge.train.fsdp import cpu_fsdp
from tuneforge.train.router_loss import RouterLossMeter

logger = logging.getLogger(__name__)

NAN_CAUSES = (
    "learning_rate too high (try 10x lower or a longer warmup), fp16 overflow (use bf16 or fp32), "
    "corrupt or empty samples (rows whose labels are all masked), or a model loaded in the wrong dtype"
)


class TuneforgeTrainer(Trainer):
    """transformers.Trainer with atomic checkpoint saves, a hard stop on non-finite loss and custom optimizers."""

    def __init__(
        self,
        *args: Any,
        fingerprint: dict[str, str] | None = None,
        optimizer_factory: Callable[[Any, Any], torch.optim.Optimizer] | None = None,
        loss_fn: Callable[[Any, dict[str, Any]], torch.Tensor] | None = None,
        train_batch_sampler: Any = None,
        **kwargs: Any,
    ) -> None:
        self._train_batch_sampler = train_batch_sampler
        self._fingerprint = fingerprint or {}
        self._optimizer_factory = optimizer_factory
        self._loss_fn = loss_fn
        self._staging_dir: str | None = None
        self._router_loss = RouterLossMeter()
        super().__init__(*args, **kwargs)
        if loss_fn is not None:
            self.model_accepts_loss_kwargs = False  # loss_fn returns a batch mean: scale it for accumulation

    def create_accelerator_and_postprocess(self) -> None:
        """The Trainer's Accelerator; FSDP2 also shards on CPU ranks (gloo), where accelerate alone runs DDP."""
        with cpu_fsdp(self.args):
            super().create_accelerator_and_postprocess()

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        """The model's own loss, or `loss_fn(model, inputs)` for stages with their own objective (rm, dpo, kto).

        A MoE model's router auxiliary loss, when it returns one while training, is kept for the log (`aux_loss`).
        """
        if self._loss_fn is None:
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            if model.training:
                self._router_loss.add(outputs)
            return (loss, outputs) if return_outputs else loss
        loss = self._loss_fn(model, inputs)
        return (loss, {"loss": loss}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Log as the Trainer does, with the mean router auxiliary loss since the last log beside `loss`."""
        if "loss" in logs:
            aux = self._router_loss.pop(lambda t: self.accelerator.reduce(t, reduction="mean"))
            if aux is not None:
                logs["aux_loss"] = aux
        super().log(logs, start_time)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Evaluate without the KV cache, as during training: with `use_cache` on, transformers skips the
        detection of packed documents, so neat-packed samples would attend to each other."""
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        config = getattr(model, "config", None)
        saved = getattr(config, "use_cache", None)
        if config is not None:
            config.use_cache = False
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            if config is not None:
                config.use_cache = saved

    def get_train_dataloader(self) -> Any:
        """The train DataLoader; token-budget batches when a `train_batch_sampler` was given."""
        if self._train_batch_sampler is None:
            return super().get_train_dataloader()
        from tuneforge.train.speed.batching import budget_dataloader

        return budget_dataloader(self, self._train_batch_sampler)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """Build the optimizer; `optimizer_factory(model, args)` (LoRA+, GaLore, BAdam, Muon, ...) makes it when set."""
        if self._optimizer_factory is None or self.optimizer is not None:
            return super().create_optimizer(model)
        self.optimizer = self._optimizer_factory(self.model, self.args)
        return self.optimizer

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """One forward/backward pass; stops training with a clear message when the loss is NaN or infinite."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = float(loss.detach().float())
        if not math.isfinite(value):
            raise TuneforgeError(
                f"The training loss became {value} at step {self.state.global_step + 1} "
                f"(epoch {self.state.epoch or 0:.2f}); training stopped. Usual causes: {NAN_CAUSES}."
            )
        return loss

    def _get_output_dir(self, trial: Any) -> str:
        if self._staging_dir is not None:
            return self._staging_dir
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Write the checkpoint under `.staging/`, then publish it with one atomic rename and rotate old ones."""
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(self._get_output_dir(trial))
        self._staging_dir = str(run_dir / STAGING)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        barrier()  # every rank has written its part (rng state) before rank 0 publishes the checkpoint
        if self.args.should_save:
            publish(run_dir / STAGING / name, run_dir / name, self._fingerprint)
        if self.state.best_global_step:
            best = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}"
            self.state.best_model_checkpoint = str(best) if best.exists() else self.state.best_model_checkpoint
        if self.args.should_save and not is_torch_xla_available():
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )


def logits_to_predictions(logits: Any, labels: Any) -> torch.Tensor:
    """Keep only the argmax token ids during evaluation (full logits would not fit in memory)."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


def token_accuracy(eval_pred: Any) -> dict[str, float]:
    """Next-token accuracy over label positions that are not masked (-100)."""
    preds, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
    preds, labels = preds[:, :-1], labels[:, 1:]
    mask = labels != -100
    correct = (preds == labels) & mask
    return {"accuracy": float(correct.sum() / max(mask.sum(), 1))}
