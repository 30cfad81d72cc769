"""GET /health: liveness and queue depth; GET /metrics: Prometheus figures (neither needs an API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from tuneforge.serve.deps import EngineDep
from tuneforge.serve.metrics import render

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(engine: EngineDep) -> dict:
    """`{"status": "ok", "queued": N}`, or status `stopping` while shutting down."""
    queue = engine.backend.queue
    return {"status": "stopping" if queue.closed else "ok", "queued": len(queue)}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(http: Request, engine: EngineDep) -> PlainTextResponse:
    """Queue depth, running requests, tokens/s, time to first token and errors by type (Prometheus text)."""
    text = render(engine, http.app.state.metrics)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
