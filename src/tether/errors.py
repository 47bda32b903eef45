"""Every typed failure tether raises. Callers catch these, never bare exceptions."""

from __future__ import annotations


class TetherError(Exception):
    """Base of all tether errors."""


class ConfigError(TetherError):
    """Settings are invalid or a secret was found where it must not be."""


class InvalidQuestion(TetherError):
    """A question is empty or longer than the configured limit."""


class StoreError(TetherError):
    """The store cannot be opened or is in an unexpected state."""


class TenantRequired(StoreError):
    """A store query arrived without a tenant. The store never guesses 'all tenants'."""


class AccessDenied(TetherError):
    """The caller is not allowed to see what it asked for."""


class InvalidFilter(TetherError):
    """A metadata filter names an unknown operator or has a malformed value."""


class IngestError(TetherError):
    """A single source could not be ingested; the reason is shown in the ingest report."""


class UnsupportedType(IngestError):
    """No loader handles this file type."""


class EmptyDocument(IngestError):
    """The file holds no text to index."""


class FileTooLarge(IngestError):
    """The file exceeds the configured size limit."""


class UnreadableDocument(IngestError):
    """The file is corrupt, undecodable or malformed for its type."""


class UploadRejected(IngestError):
    """An uploaded file was refused before anything was stored. `code` is machine-readable
    (too_large, unsupported_type, archive_bomb, polyglot, executable, active_content,
    parse_timeout, parse_memory, parse_failed, empty); the message says why in words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class EmbeddingError(TetherError):
    """The embedder failed or returned vectors of the wrong shape."""


class CitationError(TetherError):
    """An answer cited a chunk that was not in the context it was given."""


class DatasetError(TetherError):
    """An evaluation dataset is missing or malformed."""


class ProviderError(TetherError):
    """A model provider call failed. Carries the provider's request id when it sent one."""

    #: Whether repeating the same request may succeed (drives the retry wrapper).
    retryable: bool = False

    def __init__(
        self, message: str, *, request_id: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.status = status

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (request id {self.request_id})" if self.request_id else base


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (401/403)."""


class RateLimited(ProviderError):
    """429: slow down. `retry_after` is the provider's hint in seconds, if it gave one."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id, status=status)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx or a broken connection: the provider could not serve the request."""

    retryable = True


class BadRequest(ProviderError):
    """4xx other than auth and rate limits: the request itself is wrong; never retried."""


class ContextLengthExceeded(BadRequest):
    """The prompt plus max_tokens does not fit the model's context window."""


class Timeout(ProviderError):
    """Connect, read, write, pool or first-token timeout."""

    retryable = True


class InvalidResponse(ProviderError):
    """The provider answered 2xx with a body that does not parse as its own wire format."""


class InvalidOutput(TetherError):
    """A model's output still failed validation after the bounded repair attempts."""

    def __init__(self, message: str, *, last_output: str = "", errors: list[str] | None = None):
        super().__init__(message)
        self.last_output = last_output
        self.errors = errors or []


class BudgetExceeded(TetherError):
    """A call would exceed a token or money limit; raised before any network call."""

    def __init__(
        self,
        message: str,
        *,
        feature: str = "",
        scope: str = "",
        limit: float = 0.0,
        spent: float = 0.0,
        needed: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.feature = feature
        self.scope = scope
        self.limit = limit
        self.spent = spent
        self.needed = needed


class ToolError(TetherError):
    """A tool call was refused or failed; the message says which tool and why."""


class UnknownTool(ToolError):
    """The model asked for a tool that is not registered (it can never be called)."""


class ToolNotAllowed(ToolError):
    """The tool is registered but not allowlisted for this route or tenant."""


class InvalidToolArgs(ToolError):
    """The model's arguments did not validate against the tool's args model."""

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class NeedApproval(ToolError):
    """A write tool must be approved before it runs; the run is paused, not failed."""

    def __init__(self, tool: str, safe_args: dict[str, object], run_id: str, call_id: str):
        super().__init__(f"{tool} needs approval (run {run_id})")
        self.tool = tool
        self.safe_args = safe_args
        self.run_id = run_id
        self.call_id = call_id


class RunNotFound(TetherError):
    """No agent run with that id in the caller's tenant."""


class RunConflict(TetherError):
    """The run is not in a state that allows the request (e.g. approving a rejected call,
    or resuming a run another worker is driving)."""
