"""`streaming: true`: rows are read, converted and tokenized lazily as training consumes them (no cache).

Local JSON-lines and text files are read line by line; a JSON array is parsed once; hub datasets use
`datasets.load_dataset(..., streaming=True)`. Datasets are mixed with `datasets.interleave_datasets` or
concatenated, shuffled within `buffer_size`, and `val_size` (a row count) is taken from the front. Sample
packing (sft) packs the samples of each chunk of `STREAM_CHUNK` rows, as LLaMA-Factory packs each preprocessing
batch; pre-training chunking works as without streaming.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tuneforge.data.convert import convert_rows
from tuneforge.data.loading import RawRows, data_files, read_file, read_hub
from tuneforge.data.mixing import parse_probs
from tuneforge.data.packing import pack_table
from tuneforge.data.process import process_rows
from tuneforge.data.registry import DatasetAttr
from tuneforge.data.report import RowReport
from tuneforge.data.splits import DatasetSplits, DataStats, Plan
from tuneforge.data.tokens import MemoTokenizer
from tuneforge.errors import DataError

if TYPE_CHECKING:
    from tuneforge.config.data import DataSection

logger = logging.getLogger("tuneforge.data")
STREAM_CHUNK = 256
_JOBS: dict[str, tuple] = {}  # generator arguments by key (kept for the life of the process)


def prepare_streaming(plan: Plan, tokenizer: Any) -> DatasetSplits:
    """Train/eval `datasets.IterableDataset`s for `plan` (see the module docstring). `val_size` is a row count
    here (the config checks refuse a fraction with streaming)."""
    from datasets import IterableDataset

    d = plan.data
    if d.val_size and (d.val_size < 1 or int(d.val_size) != d.val_size):
        raise DataError(f"With streaming, val_size must be a row count (an integer >= 1), got {d.val_size}.")
    parts = [_iterable(IterableDataset, a, plan, tokenizer) for a in plan.train_attrs]
    train = _mix(parts, d, plan.seed)
    evals = [_iterable(IterableDataset, a, plan, tokenizer) for a in plan.eval_attrs]
    evaluation = _mix(evals, d, plan.seed) if evals else None
    if train is not None:
        train = train.shuffle(buffer_size=d.buffer_size, seed=plan.seed)
        if d.val_size and evaluation is None:
            evaluation, train = train.take(int(d.val_size)), train.skip(int(d.val_size))
    stats = DataStats(kind=plan.kind, template=plan.template_name, warnings=plan.warnings)
    return DatasetSplits(train, evaluation, stats, plan.template)


def _iterable(cls: Any, attr: DatasetAttr, plan: Plan, tokenizer: Any) -> Any:
    """An IterableDataset over `_rows`; the heavy arguments travel by key, so `datasets` does not hash them."""
    key = f"{id(plan)}-{attr.name}-{len(_JOBS)}"
    _JOBS[key] = (attr, plan, tokenizer)
    return cls.from_generator(_rows_by_key, gen_kwargs={"key": key})


def _rows_by_key(key: str) -> Iterator[dict[str, Any]]:
    yield from _rows(*_JOBS[key])


def _mix(parts: list[Any], d: DataSection, seed: int) -> Any:
    from datasets import concatenate_datasets, interleave_datasets

    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if d.mix_strategy == "concat":
        return concatenate_datasets(parts)
    stopping = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted"}
    probs = parse_probs(d.interleave_probs, len(parts))
    strategy = stopping.get(d.mix_strategy, "all_exhausted_without_replacement")
    return interleave_datasets(parts, probabilities=probs, seed=seed, stopping_strategy=strategy)


def _raw(attr: DatasetAttr, report: RowReport) -> Iterator[tuple[int, dict[str, Any]]]:
    if attr.source != "file":
        yield from enumerate(read_hub(attr), start=1)
        return
    for path in data_files(attr):
        yield from read_file(path, attr.name, report)


def _rows(attr: DatasetAttr, plan: Plan, tokenizer: Any) -> Iterator[dict[str, Any]]:
    """Processed rows of one dataset, produced lazily in chunks of `STREAM_CHUNK` rows."""
    report = RowReport(strict=plan.data.strict_data)
    tok = MemoTokenizer(tokenizer)
    limit = plan.data.max_samples
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    for count, (number, row) in enumerate(_raw(attr, report)):
        if limit is not None and count >= limit:
            break
        rows.append(row)
        numbers.append(number)
        if len(rows) == STREAM_CHUNK:
            yield from _chunk(RawRows(attr.name, rows, numbers), attr, plan, tok, report)
            rows, numbers = [], []
    if rows:
        yield from _chunk(RawRows(attr.name, rows, numbers), attr, plan, tok, report)
    report.log_summary()


def _chunk(
    raw: RawRows, attr: DatasetAttr, plan: Plan, tok: MemoTokenizer, report: RowReport
) -> Iterator[dict[str, Any]]:
    """Convert and tokenize one chunk (KTO's mismatched completions and pt blocks stay within the chunk)."""
    examples = convert_rows(raw, attr, report, pretrain=plan.kind == "pt")
    table = process_rows(examples, plan.template, tok, plan.opts, report)
    if plan.pack and not plan.opts.pt_chunking and table.num_rows:
        table = pack_table(table, plan.opts.cutoff_len, plan.neat).table
    yield from table.to_pylist()


def columns_of(dataset: Any) -> list[str]:
    """A dataset's column names ([] when it is missing or empty); a streamed one is asked for its first row only."""
    if dataset is None:
        return []
    if dataset.column_names is not None:
        return list(dataset.column_names) if len(dataset) else []
    first = next(iter(dataset.take(1)), None)
    return list(first) if first is not None else []
