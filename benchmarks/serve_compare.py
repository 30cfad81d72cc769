"""Serving side by side: tuneforge's API vs LLaMA-Factory's API vs plain transformers `generate`, default settings.

Run:  python benchmarks/serve_compare.py [--lf-python /work/lfvenv/bin/python] [--rounds 2] [--clients 1 8 32]

Builds a tiny random Qwen2 model (real Qwen tokenizer), starts `tuneforge api` and `llamafactory-cli api` (from the
LLaMA-Factory 0.9.5 environment given by --lf-python) as separate processes with default settings (no thread
variables: OMP_NUM_THREADS and friends are removed from their environment), then alternates the systems round
by round: each round measures every system at every client count. A client sends `--requests` chat completions
one after another (greedy, `--max-tokens` new tokens) with the official `openai` client; tokens/s is the sum of
`usage.completion_tokens` over the wall time. "plain" runs `model.generate` in a fresh process, one thread per
client, no server. Prints every measurement, the median per system and client count, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from serving import (
    decode_split,
    default_env,
    free_port,
    process_cpu,
    split_between,
    split_lines,
    start,
    tuneforge_api,
    tuneforge_env,
)

PROMPT = [{"role": "user", "content": "Tell me a long story about a dragon."}]


def hide_torchvision(work: Path) -> str:
    """A folder whose sitecustomize hides torchvision: a CUDA torchvision beside a CPU torch (as in the reference
    LLaMA-Factory environment here) breaks `import transformers.PreTrainedModel`; LF's text API never needs it."""
    shim = work / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['torchvision'] = None\n")
    return str(shim)


async def load(port: int, clients: int, requests: int, max_tokens: int) -> tuple[int, float]:
    """(completion tokens, seconds) for `clients` concurrent clients of `requests` sequential requests each."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)

    async def one_client() -> int:
        tokens = 0
        for _ in range(requests):
            reply = await client.chat.completions.create(
                model="tiny", messages=PROMPT, max_tokens=max_tokens, temperature=0
            )
            tokens += reply.usage.completion_tokens
        return tokens

    started = time.perf_counter()
    counts = await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await client.close()
    return sum(counts), elapsed


def measure_server(
    name: str, server: subprocess.Popen, port: int, clients: int, requests: int, max_tokens: int
) -> tuple[int, float, float, list[str]]:
    """(tokens, seconds, server CPU seconds, decode-split lines) of one load run; the split only for tuneforge
    servers (their /metrics)."""
    before, cpu = decode_split(port) if name != "llamafactory" else {}, process_cpu(server.pid)
    tokens, seconds = asyncio.run(load(port, clients, requests, max_tokens))
    cpu = process_cpu(server.pid) - cpu
    split = split_between(before, decode_split(port)) if name != "llamafactory" else {}
    return tokens, seconds, cpu, split_lines(split)


def plain_worker(model: str, clients: int, requests: int, max_tokens: int) -> None:
    """Subprocess body: `generate` from `clients` threads; prints {"tokens", "seconds"} as JSON."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    net = AutoModelForCausalLM.from_pretrained(model).eval()
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = ids["input_ids"]
    counts: list[int] = []

    def one_client() -> None:
        for _ in range(requests):
            with torch.inference_mode():
                out = net.generate(ids, max_new_tokens=max_tokens, do_sample=False)
            counts.append(out.shape[1] - ids.shape[1])

    net.generate(ids, max_new_tokens=2, do_sample=False)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"tokens": sum(counts), "seconds": seconds, "cpu": cpu}))


def plain(model: Path, clients: int, requests: int, max_tokens: int) -> tuple[int, float, float]:
    command = [sys.executable, __file__, "--plain-worker", str(model), str(clients), str(requests), str(max_tokens)]
    out = subprocess.run(command, env=default_env(), capture_output=True, text=True, check=True, timeout=900)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["tokens"], result["seconds"], result["cpu"]


def versions(lf_python: str) -> str:
    import torch
    import transformers

    lf = subprocess.run(
        [lf_python, "-c", "import llamafactory, transformers, torch;"
         "print(llamafactory.__version__, transformers.__version__, torch.__version__)"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    lf_text = f"LLaMA-Factory {lf[0]} (transformers {lf[1]}, torch {lf[2]})" if len(lf) == 3 else "LLaMA-Factory ?"
    return f"tuneforge (transformers {transformers.__version__}, torch {torch.__version__}); {lf_text}"


def report(results: dict[tuple[str, int], list[float]], clients: list[int], tuned: list[str]) -> None:
    print(f"\n{'clients':>7} {'tuneforge':>10} {'LF':>8} {'plain':>8} {'tf/LF':>7} {'tf/plain':>9}  (median tokens/s)")
    for n in clients:
        tf, lf, pl = (statistics.median(results[(s, n)]) for s in ("tuneforge", "llamafactory", "plain"))
        print(f"{n:>7} {tf:>10.1f} {lf:>8.1f} {pl:>8.1f} {tf / lf:>7.2f} {tf / pl:>9.2f}")
    for n in clients:
        per_round = [t / f for t, f in zip(results[("tuneforge", n)], results[("llamafactory", n)], strict=True)]
        print(f"tf/LF per round, {n} clients: " + ", ".join(f"{r:.2f}" for r in per_round))
    for name in tuned:
        ratios = [statistics.median(results[("tuneforge", n)]) / statistics.median(results[(name, n)]) for n in clients]
        print(
            f"default / {name} (hand-tuned threads): "
            + ", ".join(f"{n} clients {r:.2f}" for n, r in zip(clients, ratios, strict=True))
        )


def report_cpu(cpu_ms: dict[tuple[str, int], list[float]], clients: list[int]) -> None:
    """CPU ms per generated token (all threads of the server or worker process), and LF's over tuneforge's: the
    efficiency comparison that a busy machine hardly moves (tokens/s swing with other processes' load)."""
    print(f"\n{'clients':>7} {'tuneforge':>10} {'LF':>8} {'plain':>8} {'LF/tf':>7}  (median CPU ms per token)")
    for n in clients:
        tf, lf, pl = (statistics.median(cpu_ms[(s, n)]) for s in ("tuneforge", "llamafactory", "plain"))
        per_round = [f / t for t, f in zip(cpu_ms[("tuneforge", n)], cpu_ms[("llamafactory", n)], strict=True)]
        print(f"{n:>7} {tf:>10.2f} {lf:>8.2f} {pl:>8.2f} {lf / tf:>7.2f}  per round: "
              + ", ".join(f"{r:.2f}" for r in per_round))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lf-python", default="/work/lfvenv/bin/python")
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random Qwen2)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests", type=int, default=20, help="requests per client (fewer: rounds of ~1 s, which vary 1.7x here)"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tf-threads", type=int, nargs="*", default=[], help="also tuneforge with these threads")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve_compare_"))
    model = args.model
    if model is None:
        from tuneforge.models.tiny import make_tiny

        model = make_tiny("qwen2", work / "tiny")
    lf_cli = str(Path(args.lf_python).parent / "llamafactory-cli")
    config = work / "serve.yaml"  # the same file for both (LF reads key=value overrides only after a file)
    config.write_text(f"model_name_or_path: {model}\ntemplate: qwen\ninfer_backend: huggingface\n")
    tf_command, tf_env = tuneforge_api(config), tuneforge_env()
    servers = {
        "tuneforge": (tf_command, tf_env),
        "llamafactory": ([lf_cli, "api", str(config)], {"PYTHONPATH": hide_torchvision(work)}),
    }
    for threads in args.tf_threads:  # hand-tuned thread counts, to check the default against
        servers[f"tf@{threads}"] = (tf_command, {**tf_env, "TUNEFORGE_NUM_THREADS": str(threads)})
    ports = {name: free_port() for name in servers}
    procs: dict[str, subprocess.Popen] = {}
    results: dict[tuple[str, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int], list[float]] = {}  # CPU ms per generated token, per round
    try:  # every server started so far is stopped below, also when a later one fails to start
        for name, (cmd, env) in servers.items():
            procs[name] = start(name, cmd, ports[name], work / f"{name}.log", env)
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}; {versions(args.lf_python)}")  # fmt: skip
        for port in ports.values():  # warm-up
            asyncio.run(load(port, 1, 1, 4))
        for round_index in range(args.rounds):
            for n in args.clients:
                requests = max(1, args.requests if n < 32 else 1)
                for name in [*servers, "plain"]:
                    split: list[str] = []
                    if name == "plain":
                        tokens, seconds, cpu = plain(model, n, requests, args.max_tokens)
                    else:
                        tokens, seconds, cpu, split = measure_server(
                            name, procs[name], ports[name], n, requests, args.max_tokens
                        )
                    results.setdefault((name, n), []).append(tokens / seconds)
                    cpu_ms.setdefault((name, n), []).append(1000 * cpu / max(1, tokens))
                    print(f"round {round_index + 1} {name:>12} {n:>3} clients: {tokens:>5} tokens in "
                          f"{seconds:6.2f} s = {tokens / seconds:7.1f} tokens/s, "
                          f"{1000 * cpu / max(1, tokens):5.2f} CPU ms/token", flush=True)  # fmt: skip
                    print("".join(f"{'':>20}{line}\n" for line in split), end="")
    finally:
        for process in procs.values():
            process.terminate()
            process.wait(30)
    report(results, args.clients, [f"tf@{n}" for n in args.tf_threads])
    report_cpu(cpu_ms, args.clients)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--plain-worker":
        plain_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
