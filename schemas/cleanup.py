"""Clean-up requests: delete idle or orphaned OpenAI objects and old job records.

``CleanupTarget`` names each kind of object a clean-up job may delete; ``CleanupRequest`` picks the
targets and may override the idle limits, ask for a dry run, or reach objects this system did not create.
"""

from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from schemas.common import _STRICT, IdempotencyKey, _check_request_size, _Problems, _report_duplicates
from schemas.context import is_stored
from schemas.limits import CLEANUP_DEADLINE_MAX_S, REQUEST_BYTES_MAX


class CleanupTarget(StrEnum):
    """A kind of object a clean-up job may delete."""

    THREADS = "threads"
    """Assistants threads idle for longer than the idle limit."""
    CONVERSATIONS = "conversations"
    """Responses conversations idle for longer than the idle limit."""
    VECTOR_STORES = "vector_stores"
    """Vector stores idle for longer than the store idle limit."""
    FILES = "files"
    """Uploaded files no vector store or job refers to any more."""
    JOBS = "jobs"
    """Finished job records past their retention."""


class CleanupRequest(BaseModel):
    """Delete idle or orphaned OpenAI objects and old job records."""

    model_config = _STRICT

    kind: Literal["cleanup"] = "cleanup"
    targets: list[CleanupTarget] = Field(
        default_factory=lambda: list(CleanupTarget), min_length=1, description="Default: all of them."
    )
    dry_run: bool = Field(default=False, description="Report what would be deleted, delete nothing.")
    idle_s: float | None = Field(
        default=None, gt=0, description="Override the idle limit of threads/conversations."
    )
    store_idle_s: float | None = Field(
        default=None, gt=0, description="Override the idle limit of vector stores."
    )
    include_unmanaged: bool = Field(
        default=False, description="Also touch objects this system did not create."
    )
    idempotency_key: IdempotencyKey | None = None
    deadline_s: float | None = Field(
        default=None, gt=0, le=CLEANUP_DEADLINE_MAX_S, description="None: the worker's default."
    )

    @model_validator(mode="after")
    def _targets_unique_and_size_fits(self, info: ValidationInfo) -> Self:
        if is_stored(info):
            return self
        problems = _Problems()
        _report_duplicates(problems, "targets", [target.value for target in self.targets], "target")
        _check_request_size(self, REQUEST_BYTES_MAX, problems)
        problems.raise_if_any(type(self).__name__)
        return self
