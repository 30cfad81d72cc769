"""CPU training step time by intra-op thread count, and the count tuneforge's rule picks.

    python benchmarks/train_threads.py [--hidden 256] [--layers 2] [--batch 2] [--seq 64] [--steps 5] [--rounds 3]

Builds a random tiny qwen2 (`tuneforge.models.tiny`, in a temporary folder) and times full fine-tuning steps
(forward, backward, AdamW) on CPU at 1 and 2 threads and at torch's default (the count this process started
with: one per core unless OMP_NUM_THREADS is set). The counts alternate within each round; each count's figure is
its best round (mean step time over `--steps` steps), so a round slowed by another process does not count. Prints
ms/step, speed-up over 1 thread, and the count `tuneforge.threads.training_threads` picks at start (with its
reason and the load it saw).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def _step_fn(model, optimizer, batch: dict):
    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _time(step, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    step()  # warm-up at this count
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from tuneforge.models.tiny import make_tiny
    from tuneforge.threads import available_cores, training_threads

    default = torch.get_num_threads()
    load = os.getloadavg()[0]
    picked, why = training_threads()  # at start, as the trainer does (before this process adds to the load)
    with tempfile.TemporaryDirectory() as folder:
        make_tiny("qwen2", Path(folder), layers=args.layers, hidden=args.hidden, seed=0)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.train()
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq))
    step = _step_fn(model, torch.optim.AdamW(model.parameters(), lr=1e-5), {"input_ids": ids, "labels": ids})

    counts = sorted({1, 2, default})
    best: dict[int, float] = {}
    for _ in range(args.rounds):
        for n in counts:
            elapsed = _time(step, n, args.steps)
            best[n] = min(best.get(n, elapsed), elapsed)
    print(f"cores available {available_cores()}, torch default {default} threads, load at start {load:.2f}")
    print(f"model: qwen2 hidden {args.hidden} x {args.layers} layers, batch {args.batch} x {args.seq} tokens")
    print(f"{'threads':>26} {'ms/step':>9} {'speed-up':>9}")
    for n in counts:
        label = f"{n}" + (" (default)" if n == default else "") + (" <- tuneforge" if n == picked else "")
        print(f"{label:>26} {1000 * best[n]:>9.1f} {best[1] / best[n]:>8.2f}x")
    if picked not in best:
        print(f"tuneforge picks {picked} (not timed here)")
    print(f"tuneforge's rule: {picked} threads ({why})")


if __name__ == "__main__":
    main()
