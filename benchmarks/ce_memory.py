"""Peak memory of the LM-head loss: full logits + cross-entropy vs tuneforge's chunked linear + cross-entropy.

    python benchmarks/ce_memory.py [--tokens 2048] [--vocab 151936] [--hidden 64]

Each variant runs in a fresh process (peak resident set size is per process); forward + backward, float32.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys


def child(kind: str, tokens: int, vocab: int, hidden: int) -> None:
    import torch

    from tuneforge.train.speed.kernels import chunked_causal_lm_loss

    torch.manual_seed(0)
    h = torch.randn(1, tokens, hidden, requires_grad=True)
    w = torch.randn(vocab, hidden, requires_grad=True)
    labels = torch.randint(0, vocab, (1, tokens))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "plain":
        logits = (h @ w.T).float()
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:])
    else:
        loss = chunked_causal_lm_loss(h, w, labels)
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"{kind:8s} loss={float(loss.detach()):.6f} peak_rss={peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.tokens, args.vocab, args.hidden)
    for kind in ("plain", "chunked"):
        size = ["--tokens", str(args.tokens), "--vocab", str(args.vocab), "--hidden", str(args.hidden)]
        subprocess.run([sys.executable, __file__, "--child", kind, *size], check=True)


if __name__ == "__main__":
    main()
