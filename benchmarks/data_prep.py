"""Data preprocessing speed: rows/s for cold and warm cache.

Run: `.venv/bin/python benchmarks/data_prep.py [--rows 20000] [--workers 2] [--unique]`

The data is LLaMA-Factory's alpaca_zh_demo.json (1,000 rows) replicated to `--rows` rows (with `--unique`
each copy gets a distinct suffix, so nothing can be reused between copies), prepared for sft with the
`qwen` template, the offline Qwen2 tokenizer, cutoff_len 2048. "cold" starts from an empty cache;
"warm" is the identical second call, which only memory-maps the cached Arrow files. Imports (datasets,
transformers) are done before timing, as any training run has them loaded already.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "lf-data"


def write_data(folder: Path, rows: int, unique: bool) -> Path:
    """alpaca_zh_demo replicated to `rows` rows in `folder/alpaca_zh_bench.json`."""
    base = json.loads((SHARED / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    data = []
    for i in range(rows):
        row = dict(base[i % len(base)])
        if unique:
            row["instruction"] = f"{row['instruction']} (#{i})"
        data.append(row)
    path = folder / "alpaca_zh_bench.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--unique", action="store_true", help="make every row distinct (no reuse)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent", file=sys.stderr)
        return 0
    import datasets  # noqa: F401 - imported up front, as in a training run

    from tuneforge.config import load_config
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.tokenizer import build_qwen_tokenizer

    tokenizer = build_qwen_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNEFORGE_CACHE"] = str(Path(tmp) / "cache")
        path = write_data(Path(tmp), args.rows, args.unique)
        cfg = load_config(
            {
                "model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct",
                "stage": "sft",
                "do_train": True,
                "dataset": str(path),
                "template": "qwen",
                "cutoff_len": 2048,
                "preprocessing_num_workers": args.workers,
                "output_dir": str(Path(tmp) / "out"),
            }
        )
        cold = _timed(prepare_dataset, cfg, tokenizer)
        warm = _timed(prepare_dataset, cfg, tokenizer)
    rows = len(cold[1].train)
    print(f"rows: {args.rows} read, {rows} kept ({'unique' if args.unique else 'replicated'} data)")
    print(f"cold: {cold[0]:.3f} s  {args.rows / cold[0]:,.0f} rows/s")
    print(f"warm: {warm[0]:.4f} s  {args.rows / warm[0]:,.0f} rows/s  ({cold[0] / warm[0]:.0f}x faster than cold)")
    return 0


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


if __name__ == "__main__":
    raise SystemExit(main())
