"""OpenAI-style error responses: every client mistake is a 4xx JSON body, never a 500 with a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.errors import TuneforgeError
from tuneforge.infer.engine import NotARewardModelError
from tuneforge.infer.requests import QueueFullError, ShuttingDownError
from tuneforge.serve.schemas import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


class APIError(Exception):
    """An error answered with `status` and an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}


def error_response(status: int, message: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The JSON response OpenAI clients expect for an error."""
    kind = _TYPES.get(status, "rate_limit_error" if status == 429 else "server_error")
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=str(status)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    first: dict[str, Any] = error.errors()[0] if error.errors() else {}
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(location) or None
    message = str(first.get("msg", "invalid request"))
    return (f"{param}: {message}" if param else message), param


def install_error_handlers(app: FastAPI) -> None:
    """Map validation, engine and HTTP errors to OpenAI-style JSON with the right 4xx/5xx code."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return error_response(400, message, param)

    @app.exception_handler(APIError)
    async def _api(_: Request, error: APIError) -> JSONResponse:
        return error_response(error.status, error.message, error.param, error.headers)

    @app.exception_handler(QueueFullError)
    async def _full(_: Request, error: QueueFullError) -> JSONResponse:
        return error_response(429, f"The server is busy: {error}", headers={"Retry-After": "1"})

    @app.exception_handler(ShuttingDownError)
    async def _closing(_: Request, error: ShuttingDownError) -> JSONResponse:
        return error_response(503, str(error), headers={"Retry-After": "5"})

    @app.exception_handler(NotARewardModelError)
    async def _not_rm(_: Request, error: NotARewardModelError) -> JSONResponse:
        return error_response(400, str(error))

    @app.exception_handler(TuneforgeError)
    async def _user(_: Request, error: TuneforgeError) -> JSONResponse:
        return error_response(400, str(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))


class BodyLimitMiddleware:
    """Pure ASGI middleware: answers 400 when a request body is larger than `max_bytes`."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _reject(self, scope: dict, receive: Any, send: Any) -> None:
        response = error_response(400, f"Request body larger than {self.max_bytes} bytes.", "body")
        await response(scope, receive, send)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
