"""A live `tuneforge api` server in a thread on a free loopback port, for tests that talk HTTP to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_api(cfg: Any) -> Iterator[str]:
    """Serve `cfg`'s model with the real app and uvicorn; yields `http://127.0.0.1:PORT`, stops on exit."""
    from tuneforge.infer import load_engine
    from tuneforge.serve.server import server_settings

    engine = load_engine(cfg)
    with serving(engine, server_settings(cfg, engine)) as url:
        yield url


@contextmanager
def serving(engine: Any, settings: Any) -> Iterator[str]:
    """Serve `engine` with `settings` (real app, uvicorn in a thread); yields the base URL, stops on exit."""
    from tuneforge.serve.app import create_app
    from tuneforge.serve.server import build_server

    port = free_port()
    server = build_server(create_app(engine, settings), engine, "127.0.0.1", port, "warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def tiny_engine(model_dir: Any, **settings: Any) -> Any:
    """An inference engine over the tiny model at `model_dir` with the qwen template and config `settings`."""
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    return load_engine(load_config({"model_name_or_path": str(model_dir), "template": "qwen", **settings}))
