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


class EmbeddingError(TetherError):
    """The embedder failed or returned vectors of the wrong shape."""


class CitationError(TetherError):
    """An answer cited a chunk that was not in the context it was given."""


class DatasetError(TetherError):
    """An evaluation dataset is missing or malformed."""
