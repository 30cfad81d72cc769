"""Load test of the OpenAI-compatible API: N concurrent streaming clients on a tiny model.

Run:  python benchmarks/serve_load.py --clients 1 8 --requests 4 --max-tokens 32
(builds a tiny random Qwen2 model unless --model names a folder; serves it in-process on a free port).
Prints requests/s, generated tokens/s and p50/p99 time to first token per client count; with 8 clients the
tokens/s should be well above 1 client, because the engine decodes concurrent requests in one batch. Then, per
batch size, the time of a decode step and the share of it spent outside the model forward (sampling, bookkeeping).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, max_batch: int) -> tuple[str, object, object]:
    """Serve `model` with uvicorn in a thread; returns (base_url, uvicorn server, engine)."""
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine
    from tuneforge.serve.app import create_app
    from tuneforge.serve.server import build_server, server_settings

    cfg = load_config({"model_name_or_path": str(model), "template": "qwen", "max_batch_size": max_batch})
    engine = load_engine(cfg)
    port = _free_port()
    server = build_server(create_app(engine, server_settings(cfg, engine)), engine, "127.0.0.1", port, "warning")
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/v1", server, engine


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
    args = parser.parse_args()
    model = args.model
    if model is None:
        from tuneforge.models.tiny import make_tiny

        model = make_tiny("qwen2", Path(tempfile.mkdtemp()) / "tiny")
    base_url, server, engine = start_server(model, max(args.clients))
    asyncio.run(run_clients(base_url, 1, 1, 4))  # warm-up
    rows = [asyncio.run(run_clients(base_url, n, args.requests, args.max_tokens)) for n in args.clients]
    print(f"{'clients':>8} {'req/s':>8} {'tok/s':>9} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12}")
    for row in rows:
        print(
            f"{row['clients']:>8} {row['requests_per_s']:>8.2f} {row['tokens_per_s']:>9.1f} "
            f"{row['ttft_p50_ms']:>12.0f} {row['ttft_p99_ms']:>12.0f}"
        )
    if len(rows) > 1:
        print(f"throughput x{rows[-1]['tokens_per_s'] / rows[0]['tokens_per_s']:.1f} from {rows[0]['clients']} "
              f"to {rows[-1]['clients']} clients")  # fmt: skip
    print_decode_split(engine.backend)
    server.should_exit = True


def print_decode_split(backend: object) -> None:
    """Per batch size: decode steps, ms per step, and the share spent outside the model forward (target <= 10 %)."""
    stats = getattr(backend, "decode_stats", None)
    if stats is None:
        return
    print(f"intra-op threads: {backend.threads or 'not measured (set by the environment or not on CPU)'}")
    print(f"{'batch':>6} {'steps':>6} {'ms/step':>8} {'outside forward':>16}")
    for rows in sorted(stats.steps):
        share = stats.outside_forward(rows)
        print(f"{rows:>6} {stats.steps[rows]:>6} {1000 * stats.step_s[rows] / stats.steps[rows]:>8.2f} {share:>16.1%}")


if __name__ == "__main__":
    main()
