"""`/v1/documents`: upload (scanned, parsed in a sandboxed subprocess, written in one
transaction, so a rejected or failed upload leaves nothing behind), list, delete, reindex."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from pydantic import BaseModel

from tether.indexer import CHUNKER_VERSION, make_chunks, write_batch
from tether.ingest.drafts import ChunkOptions
from tether.ingest.ids import content_hash
from tether.ingest.isolated import parse_isolated
from tether.security.uploads import ScannedUpload, UploadLimits, scan_upload
from tether.server.auth import Caller, reader, service_of, writer
from tether.server.errors import ApiError
from tether.server.service import Service
from tether.store.protocol import DocumentRecord

router = APIRouter(tags=["documents"])


class DocumentOut(BaseModel):
    source_id: str
    title: str
    chunks: int
    ingested_at: datetime


class UploadOut(DocumentOut):
    format: str
    sha256: str
    bytes: int
    #: Active content removed before parsing, e.g. ["html_script"].
    stripped: list[str]


def limits(service: Service) -> UploadLimits:
    settings = service.settings
    return UploadLimits(
        max_bytes=settings.max_upload_bytes,
        parse_seconds=settings.parse_seconds,
        parse_memory_bytes=settings.parse_memory_mb * 1024 * 1024,
    )


def _options(service: Service) -> ChunkOptions:
    settings = service.settings
    return ChunkOptions(
        max_chars=settings.chunk_max_chars, overlap_chars=settings.chunk_overlap_chars
    )


async def _index(
    service: Service, tenant: str, scanned: ScannedUpload, acl: list[str]
) -> tuple[DocumentRecord, int]:
    # Each parser process may use parse_memory_mb: bound how many run at once.
    async with service.parsers:
        parsed = await parse_isolated(scanned, _options(service), limits(service))
    source_id = scanned.name
    title = parsed.title or scanned.name
    chunks = make_chunks(parsed.drafts, source_id=source_id, tenant_id=tenant, title=title, acl=acl)
    record = DocumentRecord(
        tenant,
        source_id,
        title,
        content_hash(scanned.data + CHUNKER_VERSION.encode()),
        len(chunks),
        datetime.now(UTC),
    )
    rt = service.runtime
    await write_batch(
        rt.store,
        rt.embedder,
        tenant,
        [(record, chunks)],
        prepare_answers=service.answer_provider is None and service.settings.prepare_answers,
    )
    await rt.store.optimize()
    return record, len(chunks)


@router.post("/v1/documents", status_code=201, response_model=UploadOut)
async def upload_document(
    request: Request,
    caller: Annotated[Caller, Depends(writer)],
    file: Annotated[UploadFile, File(description="The document; its type is read from its bytes.")],
    acl: Annotated[
        list[str] | None,
        Form(description="Principals that may see it (repeatable); default: the whole tenant."),
    ] = None,
) -> UploadOut:
    service = service_of(request)
    data = await file.read()
    scanned = await asyncio.to_thread(scan_upload, file.filename or "upload", data, limits(service))
    principals = sorted({p.strip() for p in acl or ["*"] if p.strip()}) or ["*"]
    record, count = await _index(service, caller.tenant, scanned, principals)
    service.blobs.put(
        caller.tenant, record.source_id, scanned.name, scanned.sha256, principals, scanned.data
    )
    return UploadOut(
        source_id=record.source_id,
        title=record.title,
        chunks=count,
        ingested_at=record.ingested_at,
        format=scanned.format,
        sha256=scanned.sha256,
        bytes=len(data),
        stripped=scanned.stripped,
    )


@router.get("/v1/documents", response_model=list[DocumentOut])
async def list_documents(
    request: Request, caller: Annotated[Caller, Depends(reader)]
) -> list[DocumentOut]:
    records = await service_of(request).runtime.store.list_documents(caller.scope)
    return [
        DocumentOut(
            source_id=r.source_id, title=r.title, chunks=r.chunk_count, ingested_at=r.ingested_at
        )
        for r in records
    ]


@router.delete("/v1/documents/{source_id:path}", status_code=204)
async def delete_document(
    source_id: str, request: Request, caller: Annotated[Caller, Depends(writer)]
) -> Response:
    service = service_of(request)
    removed = await service.runtime.store.delete_documents(caller.tenant, [source_id])
    service.blobs.delete(caller.tenant, source_id)
    if not removed:
        raise ApiError(404, "not_found", f"no document {source_id!r} in this tenant")
    return Response(status_code=204)


@router.post("/v1/documents/{source_id:path}/reindex", response_model=DocumentOut)
async def reindex_document(
    source_id: str, request: Request, caller: Annotated[Caller, Depends(writer)]
) -> DocumentOut:
    """Parse and embed an uploaded document again (after a chunker or embedder change)."""
    service = service_of(request)
    stored = service.blobs.get(caller.tenant, source_id)
    if stored is None:
        raise ApiError(
            404,
            "not_found",
            f"no uploaded document {source_id!r}; files ingested with `tether ingest` are "
            "reindexed by ingesting them again",
        )
    name, acl, data = stored
    scanned = await asyncio.to_thread(scan_upload, name, data, limits(service))
    record, count = await _index(service, caller.tenant, scanned, acl)
    return DocumentOut(
        source_id=record.source_id,
        title=record.title,
        chunks=count,
        ingested_at=record.ingested_at,
    )
