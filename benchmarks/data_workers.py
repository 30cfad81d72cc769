"""When do `preprocessing_num_workers` worker processes pay? In-process tokenizing vs forked workers, by row count.

Run: `.venv/bin/python benchmarks/data_workers.py [--rows 1000 4000 8000 16000] [--workers 2] [--rounds 2]`

Tokenizes N distinct alpaca_zh rows (LLaMA-Factory's demo rows, each instruction given its own suffix) for sft with
the `qwen` template and the offline Qwen2 tokenizer, once in this process (`process_rows`) and once over `--workers`
forked processes (`process_parallel`, each worker limited to its share of the cores), alternating, best of
`--rounds`. It prints seconds for each, the saving, and the fixed cost of starting and joining an empty pool: the
row count where workers start to pay is about fixed cost / (per-row time x (1 - 1/workers)).
tuneforge's own choice (`parallel_workers`) is printed beside each size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "lf-data"


def distinct_rows(n: int) -> list[dict]:
    """`n` distinct alpaca_zh rows."""
    base = json.loads((SHARED / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    return [{**base[i % len(base)], "instruction": f"{base[i % len(base)]['instruction']} (#{i})"} for i in range(n)]


def _best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 4000, 8000, 16000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from tuneforge.config import load_config
    from tuneforge.data import parallel
    from tuneforge.data.convert import convert_rows
    from tuneforge.data.loading import RawRows
    from tuneforge.data.pipeline import make_plan
    from tuneforge.data.process import process_rows
    from tuneforge.data.registry import resolve_datasets
    from tuneforge.data.report import RowReport
    from tuneforge.models.tokenizer import build_qwen_tokenizer
    from tuneforge.threads import available_cores

    tokenizer = build_qwen_tokenizer("qwen2")
    cfg = load_config(
        {"model_name_or_path": "x", "stage": "sft", "do_train": True, "template": "qwen", "dataset": "alpaca_zh_demo"},
        {"dataset_dir": str(SHARED), "output_dir": "/tmp/unused", "cutoff_len": 2048},
    )
    plan = make_plan(cfg, tokenizer)
    attr = resolve_datasets("alpaca_zh_demo", str(SHARED))[0]
    rows = max(args.rows)
    raw = RawRows("bench", distinct_rows(rows), list(range(1, rows + 1)))
    examples = convert_rows(raw, attr, RowReport(), pretrain=False)

    with parallel.worker_pool(args.workers) as pool:  # warm: fork + join of an empty pool
        pool.map(abs, range(args.workers))
    fixed = _best(lambda: _empty_pool(parallel, args.workers), args.rounds)
    print(f"cores {available_cores()}, workers {args.workers}, empty pool start+join {1000 * fixed:.0f} ms")
    print(f"{'rows':>7} {'in-process s':>13} {'workers s':>10} {'saved s':>8}  tuneforge picks")
    per_row = 0.0
    for n in sorted(args.rows):
        part = RawRows("bench", examples.rows[:n], examples.numbers[:n])
        alone = _best(lambda p=part: process_rows(p, plan.template, tokenizer, plan.opts, RowReport()), args.rounds)
        forked = _best(
            lambda p=part: parallel.process_parallel(p, plan.template, tokenizer, plan.opts, RowReport(), args.workers),
            args.rounds,
        )
        picks = parallel.parallel_workers(part, plan.opts, args.workers)
        print(f"{n:>7} {alone:>13.2f} {forked:>10.2f} {alone - forked:>8.2f}  {picks} process(es)")
        per_row = alone / n
    floor = fixed / (per_row * (1 - 1 / args.workers))
    print(f"in-process {1000 * per_row:.3f} ms/row; on free cores workers cannot pay below ~{floor:.0f} rows")
    print(f"(pool cost alone, before moving the shards back; tuneforge's threshold: {parallel.MIN_DISTINCT_ROWS})")


def _empty_pool(parallel, workers: int) -> None:
    with parallel.worker_pool(workers) as pool:
        pool.map(abs, range(workers))


if __name__ == "__main__":
    main()
