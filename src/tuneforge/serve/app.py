"""`create_app(engine, settings)`: the FastAPI application, one router per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tuneforge.serve.deps import RateLimiter, ServerSettings
from tuneforge.serve.errors import BodyLimitMiddleware, install_error_handlers
from tuneforge.serve.metrics import ApiMetrics
from tuneforge.serve.routes import chat, completions, health, models, score
from tuneforge.serve.schemas import AUTH_RESPONSES


def create_app(engine: Any, settings: ServerSettings, *, close_engine: bool = True) -> FastAPI:
    """The OpenAI-compatible app over `engine`; the engine is closed on shutdown when `close_engine`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_engine:
            engine.close()

    app = FastAPI(title="tuneforge OpenAI-compatible API", lifespan=lifespan)
    metrics = ApiMetrics()
    app.state.engine, app.state.settings = engine, settings
    app.state.metrics, app.state.limiter = metrics, RateLimiter()
    install_error_handlers(app, metrics)
    for module in (models, chat, completions, score):
        app.include_router(module.router, responses=AUTH_RESPONSES)
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, metrics=metrics, keys=settings.api_keys)
    return app
