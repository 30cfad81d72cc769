"""Dependencies shared by the routes: server settings, the engine, API keys with optional per-key rate limits."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from tuneforge.errors import TuneforgeError
from tuneforge.serve.errors import UNAUTHORIZED, APIError

RATE_WINDOW = 60.0  # requests_per_minute is counted over this sliding window


@dataclass(frozen=True)
class ApiKey:
    """One accepted key: its secret, a name for logs and metrics, and an optional requests-per-minute limit."""

    key: str
    name: str = ""
    requests_per_minute: int | None = None


def parse_api_keys(raw: str) -> tuple[ApiKey, ...]:
    """Keys from `[NAME=]KEY[@RPM]` entries separated by commas, e.g. `alice=sk-a@60, sk-b`."""
    keys = []
    for index, entry in enumerate(e.strip() for e in raw.split(",")):
        if not entry:
            continue
        named, _, rpm = entry.partition("@")
        name, _, key = named.rpartition("=")
        if not key.strip() or (rpm and not rpm.strip().isdigit()) or (rpm and int(rpm) < 1):
            raise TuneforgeError(
                f"api_keys entry {index + 1} is not `[NAME=]KEY[@REQUESTS_PER_MINUTE]` (e.g. `alice=sk-a@60`)."
            )
        keys.append(ApiKey(key.strip(), name.strip() or f"key{index + 1}", int(rpm) if rpm else None))
    return tuple(keys)


@dataclass(frozen=True)
class ServerSettings:
    """What the API enforces besides the engine's own limits."""

    model_name: str
    api_keys: tuple[ApiKey | str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 512
    request_timeout: float | None = None
    extra_model_names: tuple[str, ...] = field(default=())
    media_dir: str | None = None  # local media paths are read only inside it (None: refused)
    media_max_bytes: int = 32 * 1024 * 1024  # largest media file fetched from an http(s) URL
    media_timeout: float = 15.0  # seconds to fetch one media URL
    allow_private_urls: bool = False  # fetch media from loopback / private addresses (tests serve media locally)

    def __post_init__(self) -> None:
        keys = tuple(k if isinstance(k, ApiKey) else ApiKey(k, f"key{i + 1}") for i, k in enumerate(self.api_keys))
        object.__setattr__(self, "api_keys", keys)  # plain strings are accepted for convenience


class RateLimiter:
    """Sliding-window requests-per-minute limits per key name (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def admit(self, key: ApiKey) -> None:
        """Count one request for `key`, or raise APIError 429 with Retry-After when its limit is reached."""
        if key.requests_per_minute is None:
            return
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(key.name, deque())
            while seen and seen[0] <= now - RATE_WINDOW:
                seen.popleft()
            if len(seen) >= key.requests_per_minute:
                wait = max(1, math.ceil(seen[0] + RATE_WINDOW - now))
                raise APIError(
                    429,
                    f"Rate limit of {key.requests_per_minute} requests per minute reached for API key "
                    f"{key.name!r}; retry in {wait} s.",
                    headers={"Retry-After": str(wait)},
                )
            seen.append(now)


def get_settings(request: Request) -> ServerSettings:
    """The app's `ServerSettings`."""
    return request.app.state.settings


def get_engine(request: Request) -> Any:
    """The app's inference `Engine`."""
    return request.app.state.engine


def matching_key(keys: tuple[ApiKey, ...], authorization: str | None) -> ApiKey | None:
    """The configured key that `Authorization: Bearer KEY` names (compared in constant time), or None."""
    scheme, _, token = (authorization or "").partition(" ")
    given = token.strip().encode("utf-8", "replace") if scheme.lower() == "bearer" else b""
    matches = [k for k in keys if hmac.compare_digest(given, k.key.encode())]
    return matches[0] if given and matches else None


def check_api_key(
    request: Request,
    settings: Annotated[ServerSettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """401 unless `Authorization: Bearer KEY` matches a configured key (constant-time); 429 past its rate."""
    if not settings.api_keys:
        return
    key = matching_key(settings.api_keys, authorization)
    if key is None:
        raise APIError(401, UNAUTHORIZED, "authorization")
    request.app.state.limiter.admit(key)


Authorized = Depends(check_api_key)
EngineDep = Annotated[Any, Depends(get_engine)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
