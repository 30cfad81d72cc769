"""Data preparation, whole process: tuneforge vs LLaMA-Factory 0.9.5 on the same distinct rows, cold and warm.

Run: `.venv/bin/python benchmarks/data_prep.py [--rows 20000] [--rounds 2] [--lf-python /work/lfvenv/bin/python]`

The data is LLaMA-Factory's alpaca_zh_demo.json (1,000 rows) turned into `--rows` DISTINCT rows (each copy's
instruction gets its own suffix), prepared for sft with the `qwen` template, the offline Qwen2 tokenizer and
cutoff_len 2048, default settings otherwise. Each measurement is a fresh process, timed from start to exit:

- tuneforge: `tuneforge data stats CONFIG` (imports, tokenizer, tokenize, cache, statistics);
- LLaMA-Factory: a script that runs its `get_train_args`, `load_tokenizer`, `get_dataset` (what `llamafactory-cli
  train` does before loading the model), in its own environment (`--lf-python`; skipped when absent).

"cold" starts from an empty cache (tuneforge's `TUNEFORGE_CACHE`, LLaMA-Factory's `HF_DATASETS_CACHE`); "warm" repeats
the run on the filled cache. "bare import" is `python -c "import tuneforge.cli"` plus the libraries the data path
loads (transformers, datasets). The tools alternate within each round; ratios are LF time / tuneforge time, for
the wall time and for the CPU time (user + system) of each process, which the machine's load moves much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "lf-data"
LF_RUNNER = """import sys
sys.modules["torchvision"] = None  # the reference env's torchvision does not match its torch; unused here
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
data_dir, tok_dir, out = sys.argv[1:4]
args = dict(model_name_or_path=tok_dir, stage="sft", do_train=True, dataset="bench", dataset_dir=data_dir,
            template="qwen", cutoff_len=2048, output_dir=out, finetuning_type="lora", report_to="none")
model_args, data_args, training_args, _, _ = get_train_args(args)
module = load_tokenizer(model_args)
template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
print("rows", len(get_dataset(template, model_args, data_args, training_args, stage="sft", **module)["train_dataset"]))
"""


def write_data(folder: Path, rows: int) -> None:
    """`rows` distinct alpaca_zh-like rows as `folder/bench.json` plus a dataset_info.json naming it `bench`."""
    base = json.loads((SHARED / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    data = []
    for i in range(rows):
        row = dict(base[i % len(base)])
        row["instruction"] = f"{row['instruction']} (#{i})"
        data.append(row)
    (folder / "bench.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"bench": {"file_name": "bench.json"}}), encoding="utf-8")


def _timed(command: list[str], env: dict[str, str], times: dict[str, list[float]], name: str) -> None:
    """Run `command`; record its wall time under `name` and its CPU time (user + system, the process and its
    children) under `name (cpu)`: on a shared machine the CPU time moves far less with the load than the wall."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    times.setdefault(name, []).append(seconds)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    times.setdefault(f"{name} (cpu)", []).append(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lf-python", default="/work/lfvenv/bin/python")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent", file=sys.stderr)
        return 0
    from tuneforge.models.tokenizer import tokenizer_dir

    tok_dir = str(tokenizer_dir("qwen2"))
    lf = args.lf_python if Path(args.lf_python).is_file() else None
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env = {**os.environ, **offline}
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_data(root, args.rows)
        config = root / "tf.yaml"
        config.write_text(
            f"model_name_or_path: {tok_dir}\nstage: sft\ndo_train: true\ndataset: bench\ndataset_dir: {root}\n"
            f"template: qwen\ncutoff_len: 2048\noutput_dir: {root / 'out'}\n",
            encoding="utf-8",
        )
        (root / "lf_run.py").write_text(LF_RUNNER, encoding="utf-8")
        bare = [sys.executable, "-c", "import tuneforge.cli, transformers, datasets"]
        for round_ in range(args.rounds):
            _timed(bare, env, times, "bare import")
            tf_cache, lf_cache = root / f"tf-cache-{round_}", root / f"lf-cache-{round_}"
            tf = [sys.executable, "-m", "tuneforge.cli", "data", "stats", str(config)]
            lf_cmd = [lf, str(root / "lf_run.py"), str(root), tok_dir, str(root / "lf-out")] if lf else None
            for phase in ("cold", "warm"):
                _timed(tf, {**env, "TUNEFORGE_CACHE": str(tf_cache)}, times, f"tuneforge {phase}")
                if lf_cmd:
                    _timed(lf_cmd, {**env, "HF_DATASETS_CACHE": str(lf_cache)}, times, f"LLaMA-Factory {phase}")
            load = os.getloadavg()[0]
            shown = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
            print(f"round {round_ + 1} (load average {load:.1f}): {shown}", flush=True)
    _report(times, args.rows)
    return 0


def _report(times: dict[str, list[float]], rows: int) -> None:
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{rows:,} distinct rows, whole process, median of {len(times['bare import'])} round(s):")
    for name, value in median.items():
        print(f"  {name:<26} {value:7.2f} s")
    for phase in ("cold", "warm", "cold (cpu)", "warm (cpu)"):
        if f"LLaMA-Factory {phase}" in median:
            ratios = [b / a for a, b in zip(times[f"tuneforge {phase}"], times[f"LLaMA-Factory {phase}"], strict=True)]
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            overall = median[f"LLaMA-Factory {phase}"] / median[f"tuneforge {phase}"]
            print(f"  {phase}: LLaMA-Factory / tuneforge = {overall:.2f}x (per round {shown})")
    print(f"  tuneforge warm - bare import = {median['tuneforge warm'] - median['bare import']:+.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
