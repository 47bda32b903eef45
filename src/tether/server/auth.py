"""Who is calling: every route resolves tenant, principal and role from the API key,
never from the request body; then the key's rate limit is applied."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from tether.server.errors import ApiError
from tether.server.keys import ApiKey, InvalidKey, Role
from tether.server.ratelimit import retry_after_header
from tether.server.service import Service
from tether.store.protocol import Scope


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    scope: Scope

    @property
    def tenant(self) -> str:
        return self.key.tenant


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


def require(role: Role) -> Callable[[Request], Awaitable[Caller]]:
    async def dependency(request: Request) -> Caller:
        service = service_of(request)
        presented = _presented(request)
        if not presented:
            raise ApiError(
                401,
                "authentication_error",
                "an API key is required: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            key = service.keys.resolve(presented)
        except InvalidKey as exc:
            raise ApiError(
                401, "authentication_error", str(exc), headers={"WWW-Authenticate": "Bearer"}
            ) from None
        if not key.allows(role):
            raise ApiError(
                403,
                "permission_denied",
                f"this route needs the {role} role; the key has {key.role}",
            )
        wait = service.limiter.check(key.id, key.rps, key.burst)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {key.rps:g} requests/s for this key; retry in {wait:.2f} s",
                code="rate_limit_exceeded",
                headers={"Retry-After": retry_after_header(wait)},
            )
        request.state.key_id = key.id
        return Caller(key=key, scope=Scope(key.tenant, frozenset(key.principals)))

    return dependency


reader = require("reader")
writer = require("writer")
admin = require("admin")
