"""LLaMA-Factory's benchmark workloads (../shared/bench/lf) run through tuneforge, and the report against LF.

Used by train_speed.py (`--workload`, `--report`) and benchmarks/gpu_run.sh. tokens/s counts real (non-padding)
tokens per second of training time, as LF's `effective_tokens_per_sec`; MFU uses 4*N FLOPs per token for LoRA and
6*N for full fine-tuning (N: parameters without the input embedding table) against H100 dense bf16 989 TFLOP/s.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

PEAK_FLOPS = 989e12


def add_workload_args(parser: Any) -> None:
    """The workload/report options of train_speed.py."""
    parser.add_argument("--workload", default=None, help="LF workload name (seed, lora_pack, full_pack, ...)")
    parser.add_argument("--bench-dir", default=".bench", help="folder lf_prepare.sh staged (lf/*.yaml, data/)")
    parser.add_argument("--model", default="/tmp/q15b", help="model folder (lf_run.sh builds /tmp/q15b)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap optimizer steps (same cap as LF's run)")
    parser.add_argument("--set", action="append", default=[], help="extra config key=value (YAML value)")
    parser.add_argument("--report", nargs=2, default=None, metavar=("LF_TXT", "TF_JSONL"), help="write the table")


def workload_config(bench: Path, workload: str, model: str, out: str, max_steps: int | None) -> dict[str, Any]:
    """LF's common.yaml + the workload's yaml, as LF's lf_run.sh assembles them, plus model and output."""
    import yaml

    common = (bench / "lf" / "common.yaml").read_text().replace("BENCH_DATA_DIR", str(bench / "data"))
    values = yaml.safe_load(common) | yaml.safe_load((bench / "lf" / f"{workload}.yaml").read_text())
    values.update(model_name_or_path=model, output_dir=out, logging_steps=1, disable_tqdm=True)
    if max_steps:
        values["max_steps"] = max_steps
    return values


def flops_per_token(model_dir: str, lora: bool) -> float:
    """4*N (LoRA) or 6*N (full) with N the parameters without the input embedding table."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    n = total - embed.numel() + (head.numel() if head is embed else 0)
    return (4 if lora else 6) * n


def run_workload(args: Any) -> None:
    """Train one workload with tuneforge's sft recipe and print one `TFRESULT {json}` line."""
    import torch
    import yaml

    from tuneforge.config import load_config
    from tuneforge.train.sft import run_sft

    with tempfile.TemporaryDirectory() as out:
        values = workload_config(Path(args.bench_dir), args.workload, args.model, out, args.max_steps)
        for item in args.set:
            key, _, value = item.partition("=")
            values[key] = yaml.safe_load(value)
        cfg = load_config(values)
        torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
        start = time.perf_counter()
        metrics = run_sft(cfg)
        wall = time.perf_counter() - start
        log = [json.loads(x) for x in (Path(out) / "trainer_log.jsonl").read_text().splitlines() if x.strip()]
    steps = [r for r in log if "loss" in r]
    result = summarize(steps, metrics, values["finetuning_type"] == "lora", args.model)
    result.update(workload=args.workload, wall_s=round(wall, 1), settings=args.set)
    if torch.cuda.is_available():
        result["peak_alloc_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_GiB"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    print("TFRESULT " + json.dumps(result), flush=True)


def summarize(steps: list[dict], metrics: dict, lora: bool, model: str, warmup: int = 3) -> dict[str, Any]:
    """tokens/s over the whole run (LF's way) and in steady state (after `warmup` steps), s/step and MFU."""
    runtime = float(metrics.get("train_runtime") or steps[-1]["elapsed_seconds"])
    total = steps[-1]["total_tokens"]
    result = {"steps": len(steps), "tokens": total, "train_runtime": runtime, "tokens_per_s": total / runtime}
    result["s_per_step"] = runtime / max(len(steps), 1)
    if len(steps) > warmup + 1:
        first, last = steps[warmup - 1], steps[-1]
        seconds = last["elapsed_seconds"] - first["elapsed_seconds"]
        result["steady_tokens_per_s"] = (last["total_tokens"] - first["total_tokens"]) / max(seconds, 1e-9)
        result["steady_s_per_step"] = seconds / (len(steps) - warmup)
    flops = flops_per_token(model, lora)
    result["mfu"] = result.get("steady_tokens_per_s", result["tokens_per_s"]) * flops / PEAK_FLOPS
    return result


LF_HEAD = re.compile(r"== LLaMA-Factory (\S+) rc=(\d+) wall_s=(\S+) peak_gpu_MiB=(\d*)")
LF_METRIC = re.compile(r"(effective_tokens_per_sec|train_runtime|train_steps_per_second)\s*=\s*([\d.]+)")


def parse_lf(text: str) -> dict[str, dict[str, float]]:
    """{workload: {tokens_per_s, train_runtime, steps_per_s, peak_MiB, rc}} from lf_run.sh's output."""
    out: dict[str, dict[str, float]] = {}
    current = None
    for line in text.splitlines():
        head = LF_HEAD.search(line)
        if head:
            current = head.group(1)
            out[current] = {"rc": int(head.group(2)), "peak_MiB": float(head.group(4) or 0)}
        elif current and (m := LF_METRIC.search(line)):
            out[current][m.group(1)] = float(m.group(2))
    return out


def _lf_row(lf: dict[str, dict[str, float]], name: str) -> dict[str, float]:
    """LF's figures for a workload (LF's capped seed run is named seed<steps>)."""
    for key, value in lf.items():
        if key == name or (key.startswith(name) and key[len(name) :].isdigit()):
            return value
    return {}


def run_report(lf_path: str, tf_path: str) -> None:
    """Print the markdown table: tuneforge vs LF per workload (same machine, same run)."""
    lf = parse_lf(Path(lf_path).read_text()) if Path(lf_path).exists() else {}
    rows = [json.loads(x.split(" ", 1)[1]) for x in Path(tf_path).read_text().splitlines() if x.startswith("TFRESULT")]
    print("| workload | LF tokens/s | tuneforge tokens/s (steady) | ratio | LF s/step | tuneforge s/step (steady) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        name = r["workload"]
        base = _lf_row(lf, name)
        lf_tps = base.get("effective_tokens_per_sec", 0.0)
        lf_sps = 1 / base["train_steps_per_second"] if base.get("train_steps_per_second") else 0.0
        ratio = f"{r['tokens_per_s'] / lf_tps:.2f}x" if lf_tps else "-"
        steady = r.get("steady_tokens_per_s", r["tokens_per_s"])
        print(
            f"| {name} {' '.join(r['settings'])} | {lf_tps:,.0f} | {r['tokens_per_s']:,.0f} ({steady:,.0f}) | {ratio} "
            f"| {lf_sps:.3f} | {r['s_per_step']:.3f} ({r.get('steady_s_per_step', 0):.3f}) |"
        )
    print("\n| workload | LF peak (nvidia-smi MiB) | tuneforge peak alloc / reserved GiB | tuneforge MFU |")
    print("|---|---|---|---|")
    for r in rows:
        base = _lf_row(lf, r["workload"])
        print(
            f"| {r['workload']} | {base.get('peak_MiB', 0):,.0f} | {r.get('peak_alloc_GiB', 0)} / "
            f"{r.get('peak_reserved_GiB', 0)} | {100 * r['mfu']:.1f} % |"
        )
