"""Test helpers shipped with tether, for tether's own tests and for users' tests.

`MockProvider` is a real HTTP server speaking OpenAI's Chat Completions wire format,
with per-request scripted faults (`Fault`) to exercise timeouts, retries and error
mapping end to end.
"""

from __future__ import annotations

from tether.testing.mock_provider import Fault, MockProvider, RecordedRequest
from tether.testing.replay import (
    Recording,
    RecordingTransport,
    ReplayMismatch,
    ReplayTransport,
)

__all__ = [
    "Fault",
    "MockProvider",
    "RecordedRequest",
    "Recording",
    "RecordingTransport",
    "ReplayMismatch",
    "ReplayTransport",
]
