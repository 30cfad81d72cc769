"""Dependencies shared by the routes: server settings, the engine, API-key authentication."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from tuneforge.serve.errors import APIError


@dataclass(frozen=True)
class ServerSettings:
    """What the API enforces besides the engine's own limits."""

    model_name: str
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 512
    extra_model_names: tuple[str, ...] = field(default=())


def get_settings(request: Request) -> ServerSettings:
    """The app's `ServerSettings`."""
    return request.app.state.settings


def get_engine(request: Request) -> Any:
    """The app's inference `Engine`."""
    return request.app.state.engine


def check_api_key(
    settings: Annotated[ServerSettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """401 unless `Authorization: Bearer KEY` matches a configured key (constant-time comparison)."""
    if not settings.api_keys:
        return
    scheme, _, token = (authorization or "").partition(" ")
    given = token.strip().encode() if scheme.lower() == "bearer" else b""
    matches = [hmac.compare_digest(given, key.encode()) for key in settings.api_keys]
    if not given or not any(matches):
        raise APIError(401, "Invalid or missing API key: send `Authorization: Bearer <key>`.", "authorization")


Authorized = Depends(check_api_key)
EngineDep = Annotated[Any, Depends(get_engine)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
