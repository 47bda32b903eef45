"""schemathesis hooks (loaded via SCHEMATHESIS_HOOKS): every 4xx carries a JSON error."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def json_error_body(ctx: Any, response: Any, case: Any) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        if not (isinstance(body, dict) and body.get("error", {}).get("message")):
            raise AssertionError(f"{response.status_code} without a JSON error: {response.text}")
