"""Stores hold documents, chunks, the keyword index and the vectors, one partition per tenant."""

from tether.store.protocol import DocumentRecord, Scope, Store, open_store

__all__ = ["DocumentRecord", "Scope", "Store", "open_store"]
