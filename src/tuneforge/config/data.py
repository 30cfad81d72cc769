"""Datasets, chat template, tokenization, packing and the preprocessing cache."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class DataSection(Section):
    """Datasets, chat template, tokenization, packing and the preprocessing cache."""

    template: str | None = F(None, "")
    dataset: str | None = F(None, "")
    eval_dataset: str | None = F(None, "")
    dataset_dir: str = F('data', "")
    media_dir: str | None = F(None, "")
    cutoff_len: int = F(2048, "")
    train_on_prompt: bool = F(False, "")
    mask_history: bool = F(False, "")
    streaming: bool = F(False, "")
    buffer_size: int = F(16384, "")
    mix_strategy: Literal['concat', 'interleave_under', 'interleave_over', 'interleave_once'] = F('concat', "")
    interleave_probs: str | None = F(None, "")
    overwrite_cache: bool = F(False, "")
    preprocessing_batch_size: int = F(1000, "")
    preprocessing_num_workers: int | None = F(None, "")
    max_samples: int | None = F(None, "")
    eval_num_beams: int | None = F(None, "")
    ignore_pad_token_for_loss: bool = F(True, "")
    val_size: float = F(0.0, "")
    eval_on_each_dataset: bool = F(False, "")
    packing: bool | None = F(None, "")
    neat_packing: bool = F(False, "")
    tool_format: str | None = F(None, "")
    default_system: str | None = F(None, "")
    enable_thinking: bool | None = F(True, "")
    preserve_thinking: bool = F(False, "")
    tokenized_path: str | None = F(None, "")
    data_shared_file_system: bool = F(False, "")
    strict_data: bool = F(False, "Stop at the first invalid dataset row instead of reporting, counting and skipping it.", lf_default=None)
    allow_template_mismatch: bool = F(False, "Train even when the chat template's special tokens are missing from the tokenizer's vocabulary.", lf_default=None)
