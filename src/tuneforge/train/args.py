"""Build Hugging Face `Seq2SeqTrainingArguments` from the typed config (LF names map 1:1; LF-only keys stay out)."""

from __future__ import annotations

import dataclasses
import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from tuneforge.train.dist import ddp_defaults

if TYPE_CHECKING:
    from transformers import Seq2SeqTrainingArguments

    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

# Handled by tuneforge itself rather than by the Trainer (the loader enables gradient checkpointing on the model).
_OWN_KEYS = {"gradient_checkpointing", "gradient_checkpointing_kwargs", "resume_from_checkpoint"}


@cache
def _hf_fields() -> dict[str, Any]:
    from transformers import Seq2SeqTrainingArguments

    return {f.name: f for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init}


def precision_notes(cfg: TuneforgeConfig, cuda: bool) -> dict[str, Any]:
    """Precision flags for the Trainer, and notes where a request cannot be honoured on this machine."""
    t = cfg.training
    flags = {"bf16": t.bf16 and not cfg.method.pure_bf16, "fp16": t.fp16}
    notes = []
    if not cuda and (flags["bf16"] or flags["fp16"]):
        asked = "bf16" if flags["bf16"] else "fp16"
        notes.append(
            f"`{asked}: true` asks for mixed precision on a GPU; this machine has no CUDA device, so training "
            "runs in float32 on the CPU (same results, no half-precision speed-up)."
        )
        flags = {"bf16": False, "fp16": False}
    if cfg.method.pure_bf16:
        notes.append("`pure_bf16: true`: weights, gradients and optimizer states are bfloat16 (no fp32 master).")
    return {"flags": flags, "notes": notes}


def build_training_args(cfg: TuneforgeConfig, *, cuda: bool) -> tuple[Seq2SeqTrainingArguments, list[str]]:
    """The Trainer arguments for this config, and user-facing notes about adjustments made."""
    from transformers import Seq2SeqTrainingArguments

    fields = _hf_fields()
    values: dict[str, Any] = {}
    for key, value in cfg.training.model_dump().items():
        if key not in fields or key in _OWN_KEYS:
            continue
        if value is None and _default(fields[key]) is not None:
            continue
        values[key] = value
    values.update(cfg.training_args_extra)
    precision = precision_notes(cfg, cuda)
    values.update(precision["flags"])
    if values.get("include_num_input_tokens_seen") in (None, False, "no"):
        values["include_num_input_tokens_seen"] = "non_padding"  # tokens/s in the log
    if cfg.training.disable_shuffling:
        values["train_sampling_strategy"] = "sequential"
    if not cuda:
        values["use_cpu"] = True
    ddp_defaults(cfg, values, cuda)
    return Seq2SeqTrainingArguments(**values), precision["notes"]


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None
