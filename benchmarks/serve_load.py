"""Load test of the OpenAI-compatible API: N concurrent streaming clients on a tiny model.

Run:  python benchmarks/serve_load.py --clients 1 8 --requests 4 --max-tokens 32

Builds a tiny random Qwen2 model unless --model names a folder, and serves it with `tuneforge api` in its own
process (default settings: no thread variables unless --threads), so the clients here never share the server's
interpreter lock, as real clients do not. Prints requests/s, generated tokens/s and p50/p99 time to first token per
client count; with 8 clients the tokens/s should be well above 1 client, because the engine decodes concurrent
requests in one batch. After each client count, per batch size: the decode step time, the model forward's time and
the share of the step spent outside the forward (sampling, bookkeeping; target <= 10 %), read from the server's
/metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from serving import (
    decode_split,
    free_port,
    process_cpu,
    split_between,
    split_lines,
    start,
    tuneforge_api,
    tuneforge_env,
)


async def one_request(client: object, max_tokens: int, seed: int) -> tuple[float, int]:
    """(time to first token in s, tokens generated) for one streamed chat completion."""
    start, first, tokens = time.perf_counter(), None, 0
    body = {
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": max_tokens,
        "stream": True,
        "seed": seed,
        "stream_options": {"include_usage": True},
    }
    async with client.stream("POST", "/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if first is None and '"content"' in line and '"content": ""' not in line:
                first = time.perf_counter() - start
            if '"usage"' in line and '"choices": []' in line:
                tokens = int(line.split('"completion_tokens": ')[1].split(",")[0])
    return first if first is not None else time.perf_counter() - start, tokens


async def run_clients(base_url: str, clients: int, requests: int, max_tokens: int) -> dict[str, float]:
    """Each client sends `requests` streamed requests one after another; all clients run concurrently."""
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:

        async def worker(index: int) -> list[tuple[float, int]]:
            return [await one_request(client, max_tokens, index * 1000 + i) for i in range(requests)]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(i) for i in range(clients))) for r in rs]
        elapsed = time.perf_counter() - start
    ttft = sorted(r[0] for r in results)
    return {
        "clients": clients,
        "tokens": sum(r[1] for r in results),
        "requests_per_s": len(results) / elapsed,
        "tokens_per_s": sum(r[1] for r in results) / elapsed,
        "ttft_p50_ms": 1000 * statistics.median(ttft),
        "ttft_p99_ms": 1000 * ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build a tiny random Qwen2)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, help="TUNEFORGE_NUM_THREADS for the server (default: its own choice)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    model = args.model
    if model is None:
        from tuneforge.models.tiny import make_tiny

        model = make_tiny("qwen2", work / "tiny")
    config = work / "serve.yaml"
    config.write_text(f"model_name_or_path: {model}\ntemplate: qwen\nmax_batch_size: {max(args.clients)}\n")
    env = {**tuneforge_env(), **({"TUNEFORGE_NUM_THREADS": str(args.threads)} if args.threads else {})}
    port, log = free_port(), work / "server.log"
    server = start("tuneforge api", tuneforge_api(config), port, log, env)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        asyncio.run(run_clients(base_url, 1, 1, 4))  # warm-up
        rows = []
        for n in args.clients:
            before, cpu = decode_split(port), process_cpu(server.pid)
            rows.append(asyncio.run(run_clients(base_url, n, args.requests, args.max_tokens)))
            rows[-1]["cpu_ms_per_token"] = 1000 * (process_cpu(server.pid) - cpu) / max(1, rows[-1]["tokens"])
            rows[-1]["split"] = split_lines(split_between(before, decode_split(port)))
    finally:
        server.terminate()
        server.wait(30)
    print_report(rows, log)


def print_report(rows: list[dict], log: Path) -> None:
    """The table per client count, the scaling, the decode split of each run and the server's start-up line."""
    print(f"{'clients':>8} {'req/s':>8} {'tok/s':>9} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12} {'server CPU ms/tok':>18}")
    for row in rows:
        print(
            f"{row['clients']:>8} {row['requests_per_s']:>8.2f} {row['tokens_per_s']:>9.1f} "
            f"{row['ttft_p50_ms']:>12.0f} {row['ttft_p99_ms']:>12.0f} {row['cpu_ms_per_token']:>18.2f}"
        )
    if len(rows) > 1:
        print(f"throughput x{rows[-1]['tokens_per_s'] / rows[0]['tokens_per_s']:.1f} from {rows[0]['clients']} "
              f"to {rows[-1]['clients']} clients")  # fmt: skip
    for row in rows:
        print(f"decode steps with {row['clients']} clients (server's /metrics):")
        print("\n".join(f"  {line}" for line in row["split"]) or "  none")
    startup = [line for line in log.read_text().splitlines() if line.startswith(("Loaded", "First"))]
    print("server: " + " | ".join(startup))


if __name__ == "__main__":
    main()
