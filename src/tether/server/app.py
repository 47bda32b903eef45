"""The FastAPI app: `create_app(settings)`; `tether serve` runs it under uvicorn."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.server import answers, documents, errors, openai_api, runs, stats
from tether.server.auth import Caller, admin, service_of
from tether.server.errors import error_body
from tether.server.service import open_service
from tether.settings import Settings
from tether.version import __version__

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Guard:
    """Pure ASGI (a BaseHTTPMiddleware would cost ~10% throughput): request ids, body
    size limits enforced while reading (Content-Length can lie or be absent), JSON-only
    bodies except uploads, and a Server-Timing header: `app` (ms inside tether, from the
    request's arrival to its response headers) and, for gateway calls, `model` (ms on
    the wire to the provider, summed over retries); app - model is tether's own cost."""

    def __init__(self, app: ASGIApp, *, max_json: int, max_upload: int) -> None:
        self.app = app
        self.max_json = max_json
        # Multipart framing around the file: a few headers and boundaries.
        self.max_upload = max_upload + 64 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        # Always ours, never the client's: the id names a stored answer, so it must be
        # unguessable and impossible for one caller to aim at another's.
        request_id = secrets.token_hex(16)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        method = scope["method"]
        limit = self.max_json
        if method in _BODY_METHODS:
            upload = scope["path"] == "/v1/documents"
            limit = self.max_upload if upload else self.max_json
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            wanted = b"multipart/form-data" if upload else b"application/json"
            has_body = (
                headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
            )
            if has_body and ctype != wanted and not scope["path"].endswith("/reindex"):
                await self._reject(send, 415, "unsupported_media_type", f"send {wanted.decode()}")
                return
            length = headers.get(b"content-length")
            if length is not None:
                if not length.isdigit():
                    await self._reject(send, 400, "invalid_request_error", "bad Content-Length")
                    return
                if int(length) > limit:
                    await self._reject(
                        send, 413, "request_too_large", f"the body is over {limit} bytes"
                    )
                    return
            receive = self._counting(receive, limit, state)

        async def send_with_headers(message: Message) -> None:
            if state.get("too_large"):
                # The app saw a cut-off body and answered something (400, 422); the
                # client's problem is the size, so say that instead.
                if message["type"] == "http.response.start":
                    await self._reject(
                        send, 413, "request_too_large", f"the body is over {limit} bytes"
                    )
                return
            if message["type"] == "http.response.start":
                app_ms = (time.perf_counter() - started) * 1000
                timing = f"app;dur={app_ms:.3f}"
                model_ms = state.get("model_ms")
                if model_ms is not None:
                    timing += f", model;dur={model_ms:.3f}"
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", timing.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _counting(receive: Receive, limit: int, state: dict[str, Any]) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    state["too_large"] = True
                    # End the body here: the app reads no more of it.
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        return counted

    @staticmethod
    async def _reject(send: Send, status: int, type_: str, message: str) -> None:
        body = json.dumps(error_body(type_, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_service(settings) as service:
            app.state.service = service
            yield

    app = FastAPI(
        title="tether",
        version=__version__,
        summary="Grounded, cited answers from your documents; an OpenAI-compatible gateway.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(openai_api.router)
    app.include_router(answers.router)
    app.include_router(documents.router)
    app.include_router(stats.router)
    app.include_router(runs.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=None)
    async def readyz(request: Request) -> dict[str, Any] | JSONResponse:
        """The store answers: ready to serve."""
        service = getattr(request.app.state, "service", None)
        if service is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            await service.runtime.store.tenants()
        except Exception as exc:  # any store failure means not ready
            return JSONResponse(
                {"status": "unavailable", "reason": type(exc).__name__}, status_code=503
            )
        return {"status": "ready", "models": service.models}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics(request: Request, caller: Annotated[Caller, Depends(admin)]) -> Response:
        """Prometheus text format (admin keys; a scraper sends it as a bearer token)."""
        return Response(
            service_of(request).metrics.render(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    page = resources.files("tether.server.web")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(
            page.joinpath("index.html").read_text(encoding="utf-8"),
            headers={
                # The page's own script only; the answers it shows are inserted as text.
                "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                "frame-ancestors 'none'; base-uri 'none'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        kinds = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in kinds:
            return JSONResponse(error_body("not_found", "no such file"), status_code=404)
        return Response(
            page.joinpath(name).read_text(encoding="utf-8"),
            media_type=kinds[name],
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )

    app.add_middleware(
        Guard, max_json=settings.max_request_bytes, max_upload=settings.max_upload_bytes
    )
    return app


def app_from_env() -> FastAPI:
    """The app factory uvicorn's workers call (settings from the environment)."""
    from tether.settings import load_settings

    return create_app(load_settings())
