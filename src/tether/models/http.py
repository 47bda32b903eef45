"""What every provider client over httpx shares: redaction, request ids, Retry-After,
and the mapping of transport failures to typed errors."""

from __future__ import annotations

import contextvars
import email.utils
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tether.errors import ProviderError, ProviderUnavailable, Timeout


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret with ***. Call it before shortening text, never after: a cut
    through a secret would leave a fragment no replace can find."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def header_request_id(headers: httpx.Headers) -> str | None:
    value = headers.get("x-request-id") or headers.get("request-id")
    return str(value) if value else None


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (now if now is not None else time.time()), 0.0)


def transport_error(exc: httpx.HTTPError, secrets: list[str]) -> ProviderError:
    text = redact(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"{type(exc).__name__}: {text}")
    return ProviderUnavailable(f"{type(exc).__name__}: {text}")


_UPSTREAM: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "tether_upstream_ms", default=None
)


@contextmanager
def timing_upstream() -> Iterator[list[float]]:
    """Milliseconds spent on the wire to providers inside the block (request sent to last
    byte read, summed over attempts), in `[0]` — what a gateway reports as the model's
    share of its latency (Server-Timing `model`)."""
    spent = [0.0]
    token = _UPSTREAM.set(spent)
    try:
        yield spent
    finally:
        _UPSTREAM.reset(token)


def add_upstream(ms: float) -> None:
    spent = _UPSTREAM.get()
    if spent is not None:
        spent[0] += ms
