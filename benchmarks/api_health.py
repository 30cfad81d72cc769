"""/health latency of the API while it refuses a 4 MB prompt and while 32 streams run (the event loop stays free).

Run:  python benchmarks/api_health.py [--model DIR] [--streams 32] [--max-tokens 64]
(builds a tiny random Qwen2 model unless --model names a folder; serves it from a child process on a free port).
Prints p50 / p95 / max /health latency in milliseconds for: an idle server; a 4 MB body answered 413 before
parsing; a 4 MB prompt inside a raised body limit, tokenised off the event loop and then refused for exceeding the
context; and N concurrent streams. Every figure should stay well under 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from server_helpers import free_port

PROMPT_BYTES = 4 * 1024 * 1024


def probe(url: str, busy, ready, out) -> None:
    """Child process: /health round trips (ms) for as long as `busy` is set (at least a few), put on `out`.

    The probe has an interpreter of its own: a thread beside the 32 streaming clients would wait for their GIL
    and measure the client, not the server."""
    import httpx

    times = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while busy.is_set() or len(times) < 5:
            start = time.perf_counter()
            client.get("/health").raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
            ready.set()
            time.sleep(0.01)
    out.put(times)


def measure(url: str, label: str, load) -> None:
    """Run `load()` while a probe process polls /health; print the latency figures and what the load returned."""
    ctx = multiprocessing.get_context("spawn")
    busy, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    busy.set()
    prober = ctx.Process(target=probe, args=(url, busy, ready, out), daemon=True)
    prober.start()
    ready.wait(120)
    started = time.perf_counter()
    outcome = load()
    took = time.perf_counter() - started
    busy.clear()
    times = sorted(out.get(timeout=120))
    prober.join(30)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(
        f"{label:<46} /health p50 {statistics.median(times):6.1f} ms  p95 {p95:6.1f} ms  max {times[-1]:6.1f} ms"
        f"  ({len(times)} probes, load {took:5.1f} s: {outcome})"
    )


def big_prompt(url: str) -> str:
    import httpx

    body = json.dumps({"messages": [{"role": "user", "content": "word " * (PROMPT_BYTES // 5)}], "max_tokens": 1})
    response = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"Content-Type": "application/json"},
                          timeout=300)  # fmt: skip
    return f"HTTP {response.status_code}"


def streams(url: str, count: int, max_tokens: int) -> str:
    import httpx

    def one(index: int) -> int:
        body = {"messages": [{"role": "user", "content": f"story {index}"}], "max_tokens": max_tokens, "stream": True}
        with (
            httpx.Client(base_url=url, timeout=300) as client,
            client.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            return sum(1 for line in response.iter_lines() if line.startswith("data: {"))

    with ThreadPoolExecutor(count) as pool:
        chunks = list(pool.map(one, range(count)))
    return f"{count} streams, {sum(chunks)} chunks"


def serve_forever(model: str, port: int, max_body_bytes: int, streams: int) -> None:
    """Child process: serve `model` on `port` (its own interpreter, so the clients here do not share its GIL)."""
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine
    from tuneforge.serve.app import create_app
    from tuneforge.serve.deps import ServerSettings
    from tuneforge.serve.server import build_server, settle_heap

    cfg = {"model_name_or_path": model, "template": "qwen", "max_batch_size": streams, "max_queue_size": 2 * streams}
    engine = load_engine(load_config(cfg))
    app = create_app(engine, ServerSettings(model_name="bench", max_body_bytes=max_body_bytes))
    settle_heap()  # as `tuneforge api` does
    build_server(app, engine, "127.0.0.1", port, "warning").run()


@contextmanager
def server(model: Path, max_body_bytes: int, streams: int) -> Iterator[str]:
    """A server process for `model`; yields its URL once /health answers, stops it on exit."""
    import httpx

    port = free_port()
    child = multiprocessing.get_context("spawn").Process(
        target=serve_forever, args=(str(model), port, max_body_bytes, streams), daemon=True
    )
    child.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random Qwen2)")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes inflate the max)")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tuneforge.models.tiny import make_tiny

            model = make_tiny("qwen2", Path(tmp) / "tiny", layers=2, hidden=64, seed=0)
        with server(model, PROMPT_BYTES, args.streams) as url:
            measure(url, "idle", lambda: "nothing")
            measure(url, "4 MB prompt refused (413, over the body limit)", lambda: big_prompt(url))
            measure(url, f"{args.streams} concurrent streams", lambda: streams(url, args.streams, args.max_tokens))
        with server(model, 3 * PROMPT_BYTES, args.streams) as url:
            measure(url, "4 MB prompt tokenised, refused (context)", lambda: big_prompt(url))


if __name__ == "__main__":
    main()
