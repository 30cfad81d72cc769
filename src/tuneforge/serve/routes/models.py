"""GET /v1/models: the one model this server serves."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.serve.deps import Authorized, SettingsDep
from tuneforge.serve.schemas import ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Authorized])


@router.get("/models")
async def list_models(settings: SettingsDep) -> ModelList:
    """The served model name (`served_model_name`, else the model folder's name)."""
    return ModelList(data=[ModelCard(id=settings.model_name)])
