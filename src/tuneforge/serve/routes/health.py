"""GET /health: liveness and queue depth (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.serve.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(engine: EngineDep) -> dict:
    """`{"status": "ok", "queued": N}`, or status `stopping` while shutting down."""
    queue = engine.backend.queue
    return {"status": "stopping" if queue.closed else "ok", "queued": len(queue)}
