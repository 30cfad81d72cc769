"""Mixing several tokenized datasets (concat / interleave) and splitting off a validation set.

Interleaving follows `datasets.interleave_datasets`: without probabilities the datasets take turns;
with `interleave_probs` each next row comes from a dataset drawn at random (seeded). `interleave_under`
stops when the first dataset runs out, `interleave_over` when the last one does (exhausted datasets start
again from their first row), `interleave_once` when all have run out without repeating any row.
"""

from __future__ import annotations

from typing import Any

from tuneforge.errors import DataError

STRATEGIES = ("concat", "interleave_under", "interleave_over", "interleave_once")


def parse_probs(value: Any, count: int) -> list[float] | None:
    """`interleave_probs` ("0.3,0.7" or a list) as floats summing to 1; None when unset."""
    if value in (None, ""):
        return None
    items = [float(v) for v in (value.split(",") if isinstance(value, str) else value)]
    if len(items) != count:
        raise DataError(f"interleave_probs has {len(items)} values but {count} datasets are mixed.")
    if any(p < 0 for p in items) or sum(items) <= 0:
        raise DataError(f"interleave_probs must be non-negative with a positive sum, got {items}.")
    total = sum(items)
    return [p / total for p in items]


def mix_tables(tables: list[Any], strategy: str, probs: list[float] | None, seed: int) -> Any:
    """One table from several; empty tables are left out."""
    import pyarrow as pa

    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    _check_schemas(tables)
    joined = pa.concat_tables(tables).combine_chunks()
    if strategy == "concat":
        return joined
    if strategy not in STRATEGIES:
        raise DataError(f"mix_strategy {strategy!r} is not one of {STRATEGIES}.")
    sizes = [t.num_rows for t in tables]
    return joined.take(interleave_indices(sizes, strategy, probs, seed))


def _check_schemas(tables: list[Any]) -> None:
    names = [sorted(t.column_names) for t in tables]
    if any(n != names[0] for n in names):
        raise DataError(f"Datasets to mix have different columns after processing: {names}.")


def interleave_indices(sizes: list[int], strategy: str, probs: list[float] | None, seed: int) -> list[int]:
    """Row indices into the concatenation of datasets of `sizes`, interleaved by `strategy`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
    taken = [0] * len(sizes)
    finished = [False] * len(sizes)
    out: list[int] = []
    turn = 0
    while True:
        source = int(rng.choice(len(sizes), p=probs)) if probs else turn % len(sizes)
        turn += 1
        if strategy == "interleave_once" and finished[source]:
            if all(finished):
                return out
            continue
        out.append(starts[source] + taken[source] % sizes[source])
        taken[source] += 1
        if taken[source] >= sizes[source]:
            finished[source] = True
            if strategy == "interleave_under" or all(finished):
                return out


def split_validation(table: Any, val_size: float, seed: int) -> tuple[Any, Any]:
    """(train, eval) with `val_size` rows (> 1) or that fraction (< 1, rounded up as LLaMA-Factory's
    `train_test_split` does) in eval, shuffled with `seed`."""
    import math

    import numpy as np

    count = int(val_size) if val_size > 1 else math.ceil(table.num_rows * val_size)
    if count <= 0:
        return table, None
    if count >= table.num_rows:
        raise DataError(f"val_size={val_size} leaves no training rows ({table.num_rows} rows after processing).")
    order = np.random.default_rng(seed).permutation(table.num_rows)
    return table.take(order[count:]), table.take(order[:count])
