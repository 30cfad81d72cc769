"""Tokenize a large dataset in `preprocessing_num_workers` forked processes, one contiguous shard each.

Used only where it pays: at least `MIN_CPUS` cores, many distinct rows (duplicates are already encoded once), stages
whose rows are independent (sft, pairwise, unsupervised) and platforms with `fork` (workers inherit the
tokenizer and template instead of pickling them). Each worker returns its shard as Arrow IPC bytes plus
its rejected rows; shards are concatenated in order, so the result equals the single-process one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tuneforge.data.loading import RawRows
from tuneforge.data.process import ProcessOptions, process_rows
from tuneforge.data.report import RowReport
from tuneforge.threads import available_cores, limit_threads, threads_while, worker_threads

logger = logging.getLogger(__name__)

MIN_DISTINCT_ROWS = 8000  # below this, starting workers costs more than it saves
MIN_CPUS = 4  # on 2 cores the Rust tokenizer already keeps both busy; worker processes measured slower there
_JOB: tuple | None = None


def parallel_workers(examples: RawRows, opts: ProcessOptions, workers: int | None) -> int:
    """How many worker processes to shard this dataset over; 1 (in-process) logs why the workers were not used."""
    if not workers or workers < 2:
        return 1
    cores = available_cores()
    reason = _in_process_reason(examples, opts, cores)
    if reason:
        logger.info("preprocessing_num_workers=%d: tokenizing %s in-process (%s)", workers, examples.name, reason)
        return 1
    return min(workers, cores)  # more workers than cores only oversubscribe them


def _in_process_reason(examples: RawRows, opts: ProcessOptions, cores: int) -> str | None:
    if opts.kind not in ("sft", "pairwise", "unsupervised"):
        return f"{opts.kind} rows are not independent"
    if "fork" not in multiprocessing.get_all_start_methods():
        return "this platform cannot fork workers"
    if cores < MIN_CPUS:
        return f"{cores} cores: the Rust tokenizer already keeps them busy"
    distinct = len({id(ex) for ex in examples.rows})
    if distinct < MIN_DISTINCT_ROWS:
        return f"{distinct} distinct rows < {MIN_DISTINCT_ROWS}: starting workers would cost more than it saves"
    return None


def process_parallel(
    examples: RawRows, template: Any, tokenizer: Any, opts: ProcessOptions, report: RowReport, workers: int
) -> Any:
    """`process_rows` over `workers` forked processes; problems are merged into `report`."""
    import pyarrow as pa

    global _JOB
    size = -(-len(examples) // workers)
    shards = [(start, min(start + size, len(examples))) for start in range(0, len(examples), size)]
    _JOB = (examples, template, tokenizer, opts, report.strict)
    try:
        with worker_pool(len(shards)) as pool:
            results = pool.map(_run_shard, shards)
    finally:
        _JOB = None
    tables = []
    for payload, problems in results:
        report.problems.extend(problems)
        tables.append(pa.ipc.open_stream(payload).read_all())
    tables = [t for t in tables if t.num_rows] or tables[:1]
    return pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]


@contextmanager
def worker_pool(workers: int) -> Iterator[Any]:
    """A pool of `workers` forked processes whose threads together fit the cores (see `tuneforge.threads`)."""
    threads = worker_threads(workers)
    user_set = "TOKENIZERS_PARALLELISM" in os.environ  # a user's value is kept, as the tokenizers library does
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # see `limit_threads`; silences the fork warning too
    try:
        context = multiprocessing.get_context("fork")
        with threads_while(threads), context.Pool(workers, limit_threads, (threads,)) as pool:
            yield pool
    finally:
        if not user_set:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)


def _run_shard(bounds: tuple[int, int]) -> tuple[bytes, list]:
    import pyarrow as pa

    assert _JOB is not None
    examples, template, tokenizer, opts, strict = _JOB
    start, end = bounds
    shard = RawRows(examples.name, examples.rows[start:end], examples.numbers[start:end])
    report = RowReport(strict=strict)
    table = process_rows(shard, template, tokenizer, opts, report)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes(), report.problems
