"""One JSON error shape for every failure: `{"error": {"type", "message", "code"?}}`
(OpenAI's, so OpenAI-compatible clients show the message), with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether.errors import (
    AccessDenied,
    AuthenticationError,
    BadRequest,
    BudgetExceeded,
    ConfigError,
    InvalidFilter,
    InvalidQuestion,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RunConflict,
    RunNotFound,
    TetherError,
    Timeout,
    ToolError,
    UploadRejected,
)
from tether.server.ratelimit import retry_after_header

log = logging.getLogger("tether.server")

_UPLOAD_STATUS = {"too_large": 413, "unsupported_type": 415}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.headers = headers or {}


def error_body(type_: str, message: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code is not None:
        error["code"] = code
    error.update(extra)
    return {"error": error}


def from_tether(exc: TetherError) -> ApiError:
    """The HTTP face of a library error. Upstream provider failures are the gateway's
    (502/504), never blamed on the client, except a request the provider refused."""
    if isinstance(exc, UploadRejected):
        status = _UPLOAD_STATUS.get(exc.code, 422)
        return ApiError(status, "upload_rejected", str(exc), code=exc.code)
    if isinstance(exc, InvalidQuestion | InvalidFilter):
        return ApiError(400, "invalid_request_error", str(exc))
    if isinstance(exc, RunNotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, RunConflict):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, ToolError):
        return ApiError(400, "tool_error", str(exc))
    if isinstance(exc, AccessDenied):
        return ApiError(403, "permission_denied", str(exc))
    if isinstance(exc, BudgetExceeded):
        return ApiError(429, "budget_exceeded", str(exc), code="insufficient_quota")
    if isinstance(exc, RateLimited):
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = retry_after_header(exc.retry_after)
        return ApiError(429, "upstream_rate_limited", str(exc), headers=headers)
    if isinstance(exc, Timeout):
        return ApiError(504, "upstream_timeout", str(exc))
    if isinstance(exc, BadRequest):
        return ApiError(400, "invalid_request_error", str(exc))
    if isinstance(exc, AuthenticationError | ProviderUnavailable | ProviderError):
        return ApiError(502, "upstream_error", str(exc))
    if isinstance(exc, ConfigError):
        return ApiError(500, "configuration_error", str(exc))
    return ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")


def respond(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.type, exc.message, exc.code), status_code=exc.status, headers=exc.headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(TetherError)
    async def _tether(request: Request, exc: TetherError) -> JSONResponse:
        api = from_tether(exc)
        if api.status >= 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc)
        return respond(api)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("invalid_json", "the request body is not valid JSON"), status_code=400
            )
        details = [
            {
                "loc": [str(part) for part in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in errors
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'][1:]) or 'body'}: {first['msg']}"
        return JSONResponse(
            error_body("invalid_request_error", message, details=details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body("http_error", str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", "the server failed; the error is in its log"),
            status_code=500,
        )
