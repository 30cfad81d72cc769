"""OpenAI-style error responses: every client mistake is a 4xx JSON body, never a 500 with a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.errors import TuneforgeError
from tuneforge.infer.requests import QueueFullError, RequestTimeoutError, ShuttingDownError
from tuneforge.serve.metrics import ApiMetrics
from tuneforge.serve.schemas import ErrorBody, ErrorResponse

UNAUTHORIZED = "Invalid or missing API key: send `Authorization: Bearer <key>`."

logger = logging.getLogger(__name__)

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    429: "rate_limit_error",
    499: "client_closed_request",  # never seen by the client (it left); counted apart in /metrics
}


def error_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status: client mistakes are never labelled `server_error`."""
    return _TYPES.get(status) or ("invalid_request_error" if status < 500 else "server_error")


class APIError(Exception):
    """An error answered with `status` and an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}


def error_response(status: int, message: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The JSON response OpenAI clients expect for an error."""
    body = ErrorResponse(error=ErrorBody(message=message, type=error_type(status), param=param, code=str(status)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def failure_status(error: BaseException) -> int:
    """The status a failed generation answers: 400 when the request's own settings caused it, 408 past the
    deadline, else 500 (a genuine server fault)."""
    if isinstance(error, RequestTimeoutError):
        return 408
    return 400 if isinstance(error, TuneforgeError) else 500  # SamplingError and other request faults


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    first: dict[str, Any] = error.errors()[0] if error.errors() else {}
    custom = (first.get("ctx") or {}).get("param")
    if custom:
        return str(first.get("msg")), str(custom)
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(location) or None
    message = str(first.get("msg", "invalid request"))
    return (f"{param}: {message}" if param else message), param


def install_error_handlers(app: FastAPI, metrics: ApiMetrics) -> None:
    """Map validation, engine and HTTP errors to OpenAI-style JSON with the right 4xx/5xx code."""

    def answer(status: int, message: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
        metrics.error(error_type(status))
        return error_response(status, message, param, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return answer(400, message, param)

    @app.exception_handler(APIError)
    async def _api(_: Request, error: APIError) -> JSONResponse:
        return answer(error.status, error.message, error.param, error.headers)

    @app.exception_handler(QueueFullError)
    async def _full(_: Request, error: QueueFullError) -> JSONResponse:
        return answer(429, f"The server is busy: {error}", headers={"Retry-After": "1"})

    @app.exception_handler(ShuttingDownError)
    async def _closing(_: Request, error: ShuttingDownError) -> JSONResponse:
        return answer(503, str(error), headers={"Retry-After": "5"})

    @app.exception_handler(TuneforgeError)
    async def _user(_: Request, error: TuneforgeError) -> JSONResponse:
        return answer(failure_status(error), str(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return answer(error.status_code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _fault(_: Request, error: Exception) -> JSONResponse:
        logger.error("Request failed", exc_info=error)
        return answer(500, f"Internal server error ({type(error).__name__}); see the server log.")


class BodyLimitMiddleware:
    """Pure ASGI middleware: answers 413 when a request body is larger than `max_bytes`, and 401 for a request
    with a body but without a valid API key (when keys are configured), both before reading the body, so an
    unauthenticated client cannot make the server read or parse megabytes."""

    def __init__(self, app: Any, max_bytes: int, metrics: ApiMetrics, keys: tuple[Any, ...] = ()) -> None:
        self.app, self.max_bytes, self.metrics, self.keys = app, max_bytes, metrics, keys

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"0")
        if self.keys and (declared != b"0" or b"transfer-encoding" in headers) and not self._authorized(headers):
            await self._reject(scope, receive, send, 401, UNAUTHORIZED, "authorization")
            return
        if not declared.isdigit():
            await self._reject(scope, receive, send, 400, "Content-Length is not a number.")
            return
        if int(declared) > self.max_bytes:
            await self._reject(scope, receive, send, 413, f"Request body larger than {self.max_bytes} bytes.")
            return
        parts, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._reject(scope, receive, send, 413, f"Request body larger than {self.max_bytes} bytes.")
                return
        await self.app(scope, _replay(b"".join(parts), receive), send)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        from tuneforge.serve.deps import matching_key

        authorization = headers.get(b"authorization", b"").decode("latin-1")
        return matching_key(self.keys, authorization) is not None

    async def _reject(
        self, scope: dict, receive: Any, send: Any, status: int, message: str, param: str | None = None
    ) -> None:
        self.metrics.error(error_type(status))
        await error_response(status, message, param)(scope, receive, send)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
