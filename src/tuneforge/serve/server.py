"""`api_command(cfg)`: load the engine and serve the OpenAI-compatible API with uvicorn.

Without API keys the server binds 127.0.0.1 (private) unless `api_host` says otherwise. On Ctrl-C / SIGTERM it
stops taking requests (503), lets in-flight streams finish, then stops the engine.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig
    from tuneforge.serve.deps import ApiKey, ServerSettings

logger = logging.getLogger(__name__)

GRACEFUL_SECONDS = 30


def require_api_extra() -> None:
    """Raise a TuneforgeError naming the extra to install when FastAPI or uvicorn is missing."""
    missing = [name for name in ("fastapi", "uvicorn", "jsonschema") if importlib.util.find_spec(name) is None]
    if missing:
        raise TuneforgeError(
            f"`tuneforge api` needs {', '.join(missing)}: pip install 'tuneforge[api]' (fastapi, uvicorn, jsonschema)."
        )


def api_keys(cfg: TuneforgeConfig) -> tuple[ApiKey, ...]:
    """Keys from the API_KEY environment variable, else `api_keys` (`[NAME=]KEY[@RPM]`, comma-separated)."""
    from tuneforge.serve.deps import parse_api_keys

    return parse_api_keys(os.environ.get("API_KEY") or cfg.server.api_keys or "")


def bind_address(cfg: TuneforgeConfig, keys: tuple[str, ...]) -> tuple[str, int]:
    """(host, port): API_HOST / API_PORT env, else config, else 127.0.0.1 without keys and 0.0.0.0 with."""
    host = os.environ.get("API_HOST") or cfg.server.api_host or ("0.0.0.0" if keys else "127.0.0.1")
    port = os.environ.get("API_PORT") or cfg.server.api_port
    try:
        return host, int(port)
    except ValueError:
        raise TuneforgeError(f"API_PORT={port!r} is not a port number.") from None


def server_settings(cfg: TuneforgeConfig, engine: Any, keys: tuple[ApiKey, ...] | None = None) -> ServerSettings:
    """The API's settings for this config and engine (`keys`: already parsed `api_keys`)."""
    from tuneforge.serve.deps import ServerSettings

    return ServerSettings(
        model_name=engine.model_name,
        api_keys=api_keys(cfg) if keys is None else keys,
        max_body_bytes=cfg.server.max_request_bytes,
        request_timeout=cfg.server.request_timeout,
        media_dir=os.environ.get("SAFE_MEDIA_PATH") or cfg.server.api_media_dir,
    )


def build_server(app: Any, engine: Any, host: str, port: int, log_level: str = "info") -> Any:
    """A uvicorn Server that refuses new requests as soon as shutdown starts, then drains."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            engine.backend.queue.close()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACEFUL_SECONDS)
    return DrainingServer(config)


def api_command(cfg: TuneforgeConfig) -> None:
    """`tuneforge api CONFIG`: serve the model over an OpenAI-compatible HTTP API until interrupted."""
    require_api_extra()
    from tuneforge.infer import load_engine
    from tuneforge.serve.app import create_app

    keys = api_keys(cfg)  # a malformed key spec or a bad API_PORT stops here, before the model loads
    host, port = bind_address(cfg, keys)
    from tuneforge.timing import Breakdown, loaded_line

    timing = Breakdown()
    engine = load_engine(cfg, timing)
    print("L" + loaded_line(timing, engine)[1:])
    report_first_token(engine)
    settings = server_settings(cfg, engine, keys)
    if not settings.api_keys:
        print(f"No API key set (api_keys / API_KEY): the server is open to anyone who can reach {host}:{port}.")
        if host == "127.0.0.1":
            print("Binding 127.0.0.1 only; set api_keys and api_host to serve other machines.")
    print(f"Serving {settings.model_name} at http://{host}:{port}/v1 (docs at /docs)")
    app = create_app(engine, settings)
    settle_heap()
    build_server(app, engine, host, port).run()


def settle_heap() -> None:
    """Collect once, then move every object alive now (model, libraries: ~450,000 objects) out of the collector's view.

    Without this, a full collection walks them all now and then while serving: one pause of ~100 ms (several
    hundred on a busy machine) during which no request, `/health` included, is answered. Objects created later
    are collected as usual.
    """
    import gc

    gc.collect()
    gc.freeze()


def report_first_token(engine: Any) -> None:
    """Print the time to first token of the first request served (backends that measure it)."""
    backend = engine.backend
    if not hasattr(backend, "on_first_token"):
        return

    def once(seconds: float) -> None:
        backend.on_first_token = None
        print(f"First request: first token after {1000 * seconds:.0f} ms", flush=True)

    backend.on_first_token = once
