"""Log-likelihood scoring throughput of `tuneforge eval`'s lm-eval model at several batch sizes.

    python benchmarks/eval_batching.py [--model FOLDER] [--requests 64] [--context-words 120]

Without --model a tiny random Qwen2 model is made in a temporary folder. Each batch size scores the same
MMLU-like (context, " A".." D") requests; the figures are requests per second, after one warm-up batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def requests(lm, n: int, words: int) -> list:
    contexts = [" ".join(f"word{(i * 7 + j) % 97}" for j in range(words + i % 13)) + "\nAnswer:" for i in range(n)]
    pairs = [(context, f" {'ABCD'[i % 4]}") for i, context in enumerate(contexts)]
    return [(pair, *lm._encode_pair(*pair)) for pair in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--context-words", type=int, default=120)
    parser.add_argument("--batch-sizes", default="1,4,16")
    args = parser.parse_args()

    from tuneforge.config import load_config
    from tuneforge.eval.lm import TuneforgeLM
    from tuneforge.infer import load_engine
    from tuneforge.models.tiny import make_tiny

    model = args.model or str(make_tiny("qwen2", Path(tempfile.mkdtemp()) / "tiny", layers=2, hidden=64, seed=0))
    engine = load_engine(load_config({"model_name_or_path": model}))
    try:
        for size in [int(b) for b in args.batch_sizes.split(",")]:
            lm = TuneforgeLM(engine, batch_size=size)
            batch = requests(lm, args.requests, args.context_words)
            lm._loglikelihood_tokens(batch[:size], disable_tqdm=True)  # warm-up
            start = time.perf_counter()
            lm._loglikelihood_tokens(batch, disable_tqdm=True)
            elapsed = time.perf_counter() - start
            print(f"batch_size={size:3d}  {args.requests / elapsed:8.1f} requests/s  ({elapsed:.2f} s)")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
