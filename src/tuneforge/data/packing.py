"""Packing: several tokenized samples per row of at most cutoff_len tokens (best-fit-decreasing bins).

Within a packed row each sample's first token is labelled -100, so no loss crosses a sample boundary.
With `neat_packing` the row also carries `position_ids` that restart at 0 for every sample; varlen
attention (flash-attention or SDPA with a block mask) then keeps samples from attending to each other.
Packing runs after the train/eval split, on the training split only.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass(frozen=True)
class PackResult:
    """A packed table and how full its rows are."""

    table: Any
    rows_in: int
    rows_out: int
    fill: float  # tokens / (rows_out * capacity)


def best_fit_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Assign item indices to bins of `capacity` tokens, longest first, each into the fullest bin it fits.

    Items longer than `capacity` get a bin of their own (callers truncate to cutoff_len first).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    spaces: list[int] = []  # remaining space of open bins, sorted ascending
    owners: list[int] = []  # bin id for each entry of `spaces`
    bins: list[list[int]] = []
    for index in order:
        size = lengths[index]
        slot = bisect.bisect_left(spaces, size)
        if slot == len(spaces):
            bins.append([index])
            left, owner = capacity - size, len(bins) - 1
        else:
            owner = owners.pop(slot)
            left = spaces.pop(slot) - size
            bins[owner].append(index)
        if left > 0:
            at = bisect.bisect_left(spaces, left)
            spaces.insert(at, left)
            owners.insert(at, owner)
    return bins


def pack_table(table: Any, capacity: int, neat: bool) -> PackResult:
    """Pack a table with `input_ids` and `labels` columns into rows of at most `capacity` tokens."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return PackResult(table, 0, 0, 0.0)
    lengths = pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False).astype(np.int64)
    bins = best_fit_bins(lengths.tolist(), capacity)
    order = np.fromiter((i for b in bins for i in b), dtype=np.int64, count=len(lengths))
    item_lengths = lengths[order]
    starts = np.concatenate([[0], np.cumsum(item_lengths)[:-1]])
    ids = _flat(table["input_ids"], order)
    labels = _flat(table["labels"], order).copy()
    labels[starts[item_lengths > 0]] = IGNORE
    bin_sizes = np.array([len(b) for b in bins], dtype=np.int64)
    bin_offsets = np.concatenate([[0], np.cumsum(item_lengths)[np.cumsum(bin_sizes) - 1]]).astype(np.int32)
    columns = {
        "input_ids": pa.ListArray.from_arrays(pa.array(bin_offsets), pa.array(ids)),
        "labels": pa.ListArray.from_arrays(pa.array(bin_offsets), pa.array(labels)),
    }
    if neat:
        positions = (np.arange(len(ids), dtype=np.int64) - np.repeat(starts, item_lengths)).astype(np.int32)
        columns["position_ids"] = pa.ListArray.from_arrays(pa.array(bin_offsets), pa.array(positions))
    fill = float(lengths.sum()) / (len(bins) * capacity)
    return PackResult(pa.table(columns), table.num_rows, len(bins), fill)


def _flat(column: Any, order: Any) -> Any:
    """The values of a list column's rows in `order`, concatenated, as an int32 numpy array."""
    import numpy as np
    import pyarrow.compute as pc

    taken = column.take(order)
    return pc.list_flatten(taken).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def fill_ratio(lengths: list[int], capacity: int) -> float:
    """Share of the `capacity`-token rows that would hold tokens once packed."""
    if not lengths:
        return 0.0
    return sum(lengths) / (len(best_fit_bins(lengths, capacity)) * capacity)
