"""Vector stores, their files and file batches; indexing status derived lazily from the clock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from emulator.state import Store

DAY_S = 86400
FILE_ERRORS = {
    "server_error": "An internal error occurred while indexing the file.",
    "unsupported_file": "The file type is not supported for file search.",
    "invalid_file": "The file could not be parsed.",
}
DEFAULT_CHUNKING = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}


@dataclass(slots=True)
class VectorStoreFile:
    """A file attached to a vector store; it finishes indexing at `done_at`, failing if `error_code`."""

    file_id: str
    vector_store_id: str
    created: float
    done_at: float
    error_code: str | None
    usage_bytes: int
    attributes: dict[str, Any]
    chunking_strategy: dict[str, Any]
    cancelled_at: float | None = None

    def status(self, now: float) -> str:
        """in_progress, completed, failed or cancelled at `now`."""
        if self.cancelled_at is not None and self.cancelled_at < self.done_at:
            return "cancelled"
        if now < self.done_at:
            return "in_progress"
        return "failed" if self.error_code else "completed"


@dataclass(slots=True)
class VectorStore:
    """A vector store and its files (in the order they were added)."""

    id: str
    created: float
    name: str
    metadata: dict[str, str]
    expires_after: dict[str, Any] | None
    last_active: float
    files: dict[str, VectorStoreFile] = field(default_factory=dict)


@dataclass(slots=True)
class FileBatch:
    """A batch of files added to a vector store together."""

    id: str
    vector_store_id: str
    created: float
    file_ids: list[str]
    cancelled_at: float | None = None


def add_file(
    store: Store,
    vs: VectorStore,
    file_id: str,
    attributes: dict[str, Any] | None,
    chunking_strategy: dict[str, Any] | None,
) -> VectorStoreFile:
    """Attach a file to a vector store, drawing its indexing time and fate from the seeded RNG."""
    profile = store.profile
    now = store.now()
    duration = profile.file_index_duration.sample(store.rng)
    failed = store.rng.random() < profile.p_file_failed
    code = store.rng.choice(sorted(FILE_ERRORS))
    stored = store.files[file_id]
    vs_file = VectorStoreFile(
        file_id=file_id,
        vector_store_id=vs.id,
        created=now,
        done_at=now + duration,
        error_code=code if failed else None,
        usage_bytes=int(stored.obj["bytes"]),
        attributes=attributes or {},
        chunking_strategy=_chunking_response(chunking_strategy),
    )
    vs.files[file_id] = vs_file
    vs.last_active = now
    return vs_file


def _chunking_response(strategy: dict[str, Any] | None) -> dict[str, Any]:
    if not strategy or strategy.get("type") == "auto":
        return DEFAULT_CHUNKING
    return {"type": "static", "static": dict(strategy.get("static") or DEFAULT_CHUNKING["static"])}


def render_file(vs_file: VectorStoreFile, now: float) -> dict[str, Any]:
    """The API's VectorStoreFileObject."""
    status = vs_file.status(now)
    error = None
    if status == "failed" and vs_file.error_code:
        error = {"code": vs_file.error_code, "message": FILE_ERRORS[vs_file.error_code]}
    return {
        "id": vs_file.file_id,
        "object": "vector_store.file",
        "usage_bytes": vs_file.usage_bytes if status == "completed" else 0,
        "created_at": int(vs_file.created),
        "vector_store_id": vs_file.vector_store_id,
        "status": status,
        "last_error": error,
        "chunking_strategy": vs_file.chunking_strategy,
        "attributes": vs_file.attributes,
    }


def file_counts(files: Iterable[VectorStoreFile], now: float) -> dict[str, int]:
    """Counts by status, as in the API's `file_counts`."""
    counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0}
    for vs_file in files:
        counts[vs_file.status(now)] += 1
        counts["total"] += 1
    return counts


def render_store(vs: VectorStore, now: float) -> dict[str, Any]:
    """The API's VectorStoreObject."""
    counts = file_counts(vs.files.values(), now)
    expires_at = None
    if vs.expires_after:
        expires_at = int(vs.last_active + int(vs.expires_after.get("days", 0)) * DAY_S)
    if expires_at is not None and now >= expires_at:
        status = "expired"
    else:
        status = "in_progress" if counts["in_progress"] else "completed"
    completed_bytes = sum(f.usage_bytes for f in vs.files.values() if f.status(now) == "completed")
    body = {
        "id": vs.id,
        "object": "vector_store",
        "created_at": int(vs.created),
        "name": vs.name,
        "usage_bytes": completed_bytes,
        "file_counts": counts,
        "status": status,
        "expires_at": expires_at,
        "last_active_at": int(vs.last_active),
        "metadata": vs.metadata,
    }
    if vs.expires_after:
        body["expires_after"] = vs.expires_after
    return body


def batch_files(store: Store, batch: FileBatch) -> list[VectorStoreFile]:
    """The batch's files still attached to its vector store."""
    vs = store.vector_stores.get(batch.vector_store_id)
    if vs is None:
        return []
    return [vs.files[file_id] for file_id in batch.file_ids if file_id in vs.files]


def render_batch(store: Store, batch: FileBatch, now: float) -> dict[str, Any]:
    """The API's VectorStoreFileBatchObject: in_progress until every file is done."""
    counts = file_counts(batch_files(store, batch), now)
    if batch.cancelled_at is not None:
        status = "cancelled"
    else:
        status = "in_progress" if counts["in_progress"] else "completed"
    return {
        "id": batch.id,
        "object": "vector_store.files_batch",
        "created_at": int(batch.created),
        "vector_store_id": batch.vector_store_id,
        "status": status,
        "file_counts": counts,
    }


def first_indexed_file(store: Store, vector_store_ids: Iterable[str], now: float) -> str | None:
    """The first completed file among the vector stores, for a file_search citation."""
    for vs_id in vector_store_ids:
        vs = store.vector_stores.get(vs_id)
        if vs is None:
            continue
        for vs_file in vs.files.values():
            if vs_file.status(now) == "completed":
                return vs_file.file_id
    return None
