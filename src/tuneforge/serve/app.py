"""`create_app(engine, settings)`: the FastAPI application, one router per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tuneforge.serve.deps import ServerSettings
from tuneforge.serve.errors import BodyLimitMiddleware, install_error_handlers
from tuneforge.serve.routes import chat, completions, health, models, score


def create_app(engine: Any, settings: ServerSettings, *, close_engine: bool = True) -> FastAPI:
    """The OpenAI-compatible app over `engine`; the engine is closed on shutdown when `close_engine`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_engine:
            engine.close()

    app = FastAPI(title="tuneforge OpenAI-compatible API", lifespan=lifespan)
    app.state.engine, app.state.settings = engine, settings
    install_error_handlers(app)
    for module in (models, chat, completions, score, health):
        app.include_router(module.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
