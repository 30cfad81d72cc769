"""Training throughput: tuneforge's Trainer path vs a plain PyTorch + PEFT loop over the same batches.

    python benchmarks/train_speed.py                    # CPU: tiny qwen2 built under .tiny/bench-qwen2
    python benchmarks/train_speed.py --shape qwen2-1.5b # CUDA: random model with DeepSeek-R1-Distill-Qwen-1.5B's shape
    python benchmarks/train_speed.py --workload lora_pack --bench-dir .bench --model /tmp/q15b   # LF's workloads
    python benchmarks/train_speed.py --report lf.txt tf.jsonl > RESULTS.md                        # table vs LF

Prints real (non-padding) tokens/s and peak memory for both, and tuneforge's overhead over the plain loop.
The first `--warmup` steps of each run are excluded from the timing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_model(out: Path, shape: str | None) -> Path:
    from tuneforge.models.tiny import make_tiny

    if not (out / "config.json").exists():
        make_tiny("qwen2", out, layers=2, hidden=64, seed=0, shape=shape)
    return out


def make_rows(tokenizer, n: int) -> list[dict]:
    from train_helpers import identity_rows

    return identity_rows(tokenizer, n)


def peak_mem_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def plain_loop(model_dir: Path, rows: list[dict], batch: int, steps: int, warmup: int, lr: float) -> float:
    """transformers + PEFT + AdamW, no framework: the baseline tokens/s."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.config import load_config
    from tuneforge.data.collate import PaddingCollator
    from tuneforge.models.adapters import peft_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    base.config.use_cache = False
    model = get_peft_model(base, peft_config(base, load_config({"lora_rank": 8}, paths=False), "lora"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    collate = PaddingCollator(0)
    tokens, start = 0, 0.0
    for step in range(steps):
        if step == warmup:
            _sync()
            start, tokens = time.perf_counter(), 0
        chunk = [rows[(step * batch + i) % len(rows)] for i in range(batch)]
        inputs = {k: v.to(device) for k, v in collate(chunk).items()}
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(inputs["attention_mask"].sum())
    _sync()
    return tokens / (time.perf_counter() - start)


def tuneforge_run(model_dir: Path, rows: list[dict], batch: int, steps: int, warmup: int, lr: float) -> float:
    """tuneforge's sft recipe on the same rows; tokens/s from its trainer_log.jsonl after the warmup steps."""
    import tempfile

    from datasets import Dataset
    from transformers import AutoTokenizer

    from train_helpers import read_log, tiny_config
    from tuneforge.data.collate import PaddingCollator
    from tuneforge.train.sft import TrainData, run_sft

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = tiny_config(
            model_dir,
            Path(tmp),
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=lr,
            disable_shuffling=True,
            bf16=torch.cuda.is_available(),
        )
        data = TrainData(Dataset.from_list(rows), None, PaddingCollator(tokenizer.pad_token_id))
        run_sft(cfg, data, tokenizer)
        log = [r for r in read_log(Path(tmp)) if "loss" in r]
    first, last = log[warmup - 1], log[-1]
    seconds = last["elapsed_seconds"] - first["elapsed_seconds"]
    return (last["total_tokens"] - first["total_tokens"]) / max(seconds, 1e-9)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


from speed_workloads import add_workload_args, run_report, run_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_args(parser)
    parser.add_argument("--shape", default=None, help="make-tiny shape (e.g. qwen2-1.5b, CUDA only)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    if args.report:
        return run_report(*args.report)
    if args.workload:
        return run_workload(args)
    from transformers import AutoTokenizer

    model_dir = build_model(Path(".tiny") / f"bench-{args.shape or 'qwen2'}", args.shape)
    rows = make_rows(AutoTokenizer.from_pretrained(model_dir), 64)
    plain = plain_loop(model_dir, rows, args.batch, args.steps, args.warmup, 1e-4)
    plain_mem = peak_mem_gib()
    ours = tuneforge_run(model_dir, rows, args.batch, args.steps, args.warmup, 1e-4)
    ours_mem = peak_mem_gib()
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}  model: {model_dir}")
    print(f"plain PyTorch+PEFT : {plain:10,.0f} tokens/s  peak {plain_mem:.2f} GiB")
    print(f"tuneforge          : {ours:10,.0f} tokens/s  peak {ours_mem:.2f} GiB (process peak, cumulative)")
    print(f"overhead over plain: {100 * (plain / ours - 1):+.1f} %")


if __name__ == "__main__":
    main()
