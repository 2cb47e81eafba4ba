"""Indexing requests: upload files into a new or existing vector store, and the checks on local paths.

``VectorStoreBatchRequest`` names the target store (or a ``NewVectorStore`` to create) and the inputs,
file ids and/or local paths. Paths are not checked by the model, since that needs the file system;
``path_problem`` (`schemas.paths`) is the pure check run on each path once the disk has been looked at.
"""

from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, ValidationInfo, model_validator

from schemas.common import (
    _STRICT,
    Attributes,
    IdempotencyKey,
    Metadata,
    NonEmptyStr,
    _check_request_size,
    _Problems,
    _report_duplicates,
)
from schemas.context import is_stored
from schemas.limits import (
    CHUNK_SIZE_MAX,
    CHUNK_SIZE_MIN,
    EXPIRES_AFTER_DAYS_MAX,
    INDEX_DEADLINE_MAX_S,
    INDEX_INPUTS_MAX,
    INDEX_REQUEST_BYTES_MAX,
    RETRY_FAILED_MAX,
    VECTOR_STORE_DESCRIPTION_MAX,
    VECTOR_STORE_NAME_MAX,
)
from schemas.paths import path_problem
from schemas.strings import NAME, TEXT, Id


class AutoChunking(BaseModel):
    """OpenAI's default chunking (currently 800-token chunks overlapping by 400)."""

    model_config = _STRICT

    type: Literal["auto"]


class StaticChunkingConfig(BaseModel):
    """Chunk size and overlap, in tokens."""

    model_config = _STRICT

    max_chunk_size_tokens: int = Field(ge=CHUNK_SIZE_MIN, le=CHUNK_SIZE_MAX)
    chunk_overlap_tokens: int = Field(ge=0, description="At most half of max_chunk_size_tokens.")

    @model_validator(mode="after")
    def _overlap_at_most_half(self) -> Self:
        limit = self.max_chunk_size_tokens // 2
        if self.chunk_overlap_tokens > limit:
            problems = _Problems()
            message = (
                f"chunk_overlap_tokens: at most half of max_chunk_size_tokens ({limit}), "
                f"got {self.chunk_overlap_tokens}"
            )
            problems.add(("chunk_overlap_tokens",), "overlap_too_large", message, self.chunk_overlap_tokens)
            problems.raise_if_any(type(self).__name__)
        return self


class StaticChunking(BaseModel):
    """Chunking with a chosen chunk size and overlap."""

    model_config = _STRICT

    type: Literal["static"]
    static: StaticChunkingConfig


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]
"""``{"type": "auto"}`` or ``{"type": "static", "static": {...}}``."""


class ExpiresAfter(BaseModel):
    """When an idle vector store expires."""

    model_config = _STRICT

    anchor: Literal["last_active_at"] = "last_active_at"
    days: int = Field(ge=1, le=EXPIRES_AFTER_DAYS_MAX)


class NewVectorStore(BaseModel):
    """A vector store to create for an indexing job."""

    model_config = _STRICT

    name: Annotated[str, StringConstraints(max_length=VECTOR_STORE_NAME_MAX), NAME] | None = None
    description: Annotated[str, StringConstraints(max_length=VECTOR_STORE_DESCRIPTION_MAX), TEXT] | None = (
        None
    )
    metadata: Metadata | None = None
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None


class VectorStoreBatchRequest(BaseModel):
    """Index files into a vector store: uploaded file ids and/or local paths the worker uploads.

    Paths are not checked here (that needs the file system); the worker checks them all with
    ``path_problem`` and reports every bad one in a single error, or skips them with ``skip_bad_paths``.
    """

    model_config = _STRICT

    kind: Literal["index"] = "index"
    vector_store_id: Id | None = Field(default=None, description="Exactly one of this and new_store.")
    new_store: NewVectorStore | None = None
    file_ids: list[Id] = Field(default_factory=list, max_length=INDEX_INPUTS_MAX)
    # Paths are names: a NUL or control character is refused here rather than by os.stat in a worker.
    paths: list[NonEmptyStr] = Field(default_factory=list, max_length=INDEX_INPUTS_MAX)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None
    deadline_s: float | None = Field(
        default=None, gt=0, le=INDEX_DEADLINE_MAX_S, description="None: the worker's default."
    )
    retry_failed: int = Field(
        default=1, ge=0, le=RETRY_FAILED_MAX, description="Extra rounds for failed files."
    )
    skip_bad_paths: bool = Field(
        default=False, description="Skip bad paths and name them in the result instead of refusing the job."
    )
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def _inputs_and_target_make_sense(self, info: ValidationInfo) -> Self:
        if is_stored(info):
            return self
        problems = _Problems()
        if (self.vector_store_id is None) == (self.new_store is None):
            got = "neither" if self.vector_store_id is None else "both"
            message = f"vector_store_id: give exactly one of vector_store_id and new_store, got {got}"
            problems.add(("vector_store_id",), "store_target", message, self.vector_store_id)
        total = len(self.file_ids) + len(self.paths)
        if total == 0:
            message = "file_ids: give at least one file id or path (file_ids and paths are both empty)"
            problems.add(("file_ids",), "no_inputs", message, [])
        elif total > INDEX_INPUTS_MAX:
            message = f"paths: at most {INDEX_INPUTS_MAX} file ids and paths together, got {total}"
            problems.add(("paths",), "too_many_inputs", message, total)
        _report_duplicates(problems, "file_ids", self.file_ids)
        _report_duplicates(problems, "paths", self.paths)
        if self.chunking_strategy is not None and self.new_store and self.new_store.chunking_strategy:
            message = "chunking_strategy: give it on the request or on new_store, not both"
            problems.add(("chunking_strategy",), "conflict", message, None)
        _check_request_size(self, INDEX_REQUEST_BYTES_MAX, problems)
        problems.raise_if_any(type(self).__name__)
        return self


__all__ = [
    "AutoChunking",
    "ChunkingStrategy",
    "ExpiresAfter",
    "NewVectorStore",
    "StaticChunking",
    "StaticChunkingConfig",
    "VectorStoreBatchRequest",
    "path_problem",
]
