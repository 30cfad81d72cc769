"""POST /v1/score/evaluation: reward-model scores (LLaMA-Factory-compatible request and response)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from tuneforge.serve.deps import Authorized, EngineDep, SettingsDep
from tuneforge.serve.errors import APIError
from tuneforge.serve.schemas import ScoreRequest, ScoreResponse, error_responses, new_id

router = APIRouter(prefix="/v1", tags=["score"], dependencies=[Authorized])


@router.post("/score/evaluation", responses=error_responses(400, 413, 503))
async def score_evaluation(request: ScoreRequest, engine: EngineDep, settings: SettingsDep) -> ScoreResponse:
    """One score per text; 400 when the loaded model has no value head."""
    if len(request.messages) > settings.max_messages:
        raise APIError(400, f"messages: at most {settings.max_messages} texts per request", "messages")
    scores = await asyncio.to_thread(engine.score, request.messages, request.max_length)
    return ScoreResponse(id=new_id("scoreval"), model=request.model or settings.model_name, scores=scores)
