"""Token-budget batches and micro-batch fusion for padding-free training.

Token budget: samples are grouped (best-fit-decreasing, as packing does) into batches of at most N real tokens,
once; each epoch visits the batches in a new seeded order, so every sample is used exactly once per epoch and the
number of batches (hence the step count) is fixed. Fusion: `batch b x accumulation k` becomes one padding-free batch
of `b*k` samples with accumulation 1; with token-weighted loss (sum over label tokens / label tokens in the
optimizer step) the loss and gradients are the same, in one forward/backward instead of k.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tuneforge.data.packing import best_fit_bins

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

FUSE_MAX_TOKENS = 32768  # auto fusion only while the fused batch can hold at most this many tokens


class TokenBudgetBatchSampler:
    """Batches of dataset indices holding at most `max_tokens` tokens each (a longer sample is alone)."""

    def __init__(self, lengths: list[int], max_tokens: int, *, seed: int = 0, shuffle: bool = True) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be positive")
        self.batches = [sorted(b) for b in best_fit_bins(list(lengths), max_tokens)]
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batch order `__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        if not self.shuffle:
            yield from self.batches
            return
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for i in torch.randperm(len(self.batches), generator=generator).tolist():
            yield self.batches[i]


def sample_lengths(dataset: Any) -> list[int]:
    """Token count of every row of a tokenized dataset (a `datasets.Dataset` or a list of dicts)."""
    if hasattr(dataset, "with_format"):
        import pyarrow.compute as pc

        column = dataset.with_format("arrow")["input_ids"]  # respects select/shuffle indices
        return pc.list_value_length(column).to_pylist()
    return [len(row["input_ids"]) for row in dataset]


def budget_dataloader(trainer: Any, sampler: TokenBudgetBatchSampler) -> Any:
    """The Trainer's train DataLoader with token-budget batches (same collator, workers and device placement)."""
    from torch.utils.data import DataLoader

    dataset = trainer.train_dataset
    if hasattr(dataset, "column_names"):
        dataset = trainer._remove_unused_columns(dataset, description="training")
    args = trainer.args
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=trainer.data_collator,
        num_workers=args.dataloader_num_workers,
        pin_memory=args.dataloader_pin_memory,
    )
    return trainer.accelerator.prepare(loader)


def fusion_factor(cfg: TuneforgeConfig, cuda: bool) -> int:
    """How many samples to fuse into one padding-free batch (1: no fusion) for this config."""
    t = cfg.training
    samples = t.per_device_train_batch_size * t.gradient_accumulation_steps
    if t.gradient_accumulation_steps <= 1 or t.max_tokens_per_batch or cfg.method.stage not in ("pt", "sft"):
        return 1
    if cfg.model.mixture_of_depths:  # MoD routes the top tokens of each padded row: no fused rows
        return 1
    if t.fuse_micro_batches == "on":
        return samples
    if t.fuse_micro_batches == "auto" and cuda and samples * cfg.data.cutoff_len <= FUSE_MAX_TOKENS:
        return samples
    return 1


def fuse_args(args: Any, samples: int) -> None:
    """Turn `batch x accumulation` into one batch of `samples` with no accumulation (in place)."""
    args.per_device_train_batch_size = samples
    args.gradient_accumulation_steps = 1
