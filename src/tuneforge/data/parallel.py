"""Tokenize a large dataset in `preprocessing_num_workers` forked processes, one contiguous shard each.

Used only where it pays: at least `MIN_CPUS` cores, many distinct rows (duplicates are already encoded once), stages
whose rows are independent (sft, pairwise, unsupervised) and platforms with `fork` (workers inherit the
tokenizer and template instead of pickling them). Each worker returns its shard as Arrow IPC bytes plus
its rejected rows; shards are concatenated in order, so the result equals the single-process one.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from tuneforge.data.loading import RawRows
from tuneforge.data.process import ProcessOptions, process_rows
from tuneforge.data.report import RowReport

MIN_DISTINCT_ROWS = 8000  # below this, starting workers costs more than it saves
MIN_CPUS = 4  # on 2 cores the Rust tokenizer already keeps both busy; worker processes measured slower there
_JOB: tuple | None = None


def worth_parallel(examples: RawRows, opts: ProcessOptions, workers: int | None) -> bool:
    """Whether to shard this dataset over worker processes."""
    if not workers or workers < 2 or opts.kind not in ("sft", "pairwise", "unsupervised"):
        return False
    if "fork" not in multiprocessing.get_all_start_methods() or (os.cpu_count() or 1) < MIN_CPUS:
        return False
    return len({id(ex) for ex in examples.rows}) >= MIN_DISTINCT_ROWS


def process_parallel(
    examples: RawRows, template: Any, tokenizer: Any, opts: ProcessOptions, report: RowReport, workers: int
) -> Any:
    """`process_rows` over `workers` forked processes; problems are merged into `report`."""
    import pyarrow as pa

    global _JOB
    size = -(-len(examples) // workers)
    shards = [(start, min(start + size, len(examples))) for start in range(0, len(examples), size)]
    _JOB = (examples, template, tokenizer, opts, report.strict)
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # workers run one thread each; silences the fork warning
    try:
        with multiprocessing.get_context("fork").Pool(len(shards)) as pool:
            results = pool.map(_run_shard, shards)
    finally:
        _JOB = None
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous
    tables = []
    for payload, problems in results:
        report.problems.extend(problems)
        tables.append(pa.ipc.open_stream(payload).read_all())
    tables = [t for t in tables if t.num_rows] or tables[:1]
    return pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]


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
