"""The job record, its statuses and kinds, and the errors a job can end with.

These models are what lands in Redis under ``job:{id}`` and what any reader
(the CLI, the producer client, another service) gets back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from schemas.results import CleanupResult, IndexResult, RunResult, TypedResult


class JobKind(StrEnum):
    """What a job does; each kind has its own queue and start task."""

    RUN = "run"
    """A model run: an Assistants run on a thread or a background response on a conversation."""
    INDEX = "index"
    """Vector-store indexing: uploads, file batches, failed files named and retried."""
    CLEANUP = "cleanup"
    """A clean-up sweep of threads, conversations, stores, files and old job records."""


class JobStatus(StrEnum):
    """Where a job is; exactly one at any time."""

    QUEUED = "queued"
    """Accepted and written; waiting for a worker, or for its thread to be free."""
    RUNNING = "running"
    """Remote work started; a poller supervises it."""
    REQUIRES_ACTION = "requires_action"
    """The run waits for tool outputs (see ``tool_calls``)."""
    COMPLETED = "completed"
    """Ended well; ``result`` holds what it produced."""
    FAILED = "failed"
    """Ended with ``error``; retryable errors reach this only once retries are spent."""
    CANCELLED = "cancelled"
    """Cancelled on request; a remote run was cancelled too."""
    TIMED_OUT = "timed_out"
    """Passed its deadline; the remote run or batch was cancelled."""
    EXPIRED = "expired"
    """The remote run expired while it waited for tool outputs."""

    @property
    def ended(self) -> bool:
        """True for the end states, which never change again."""
        return self in TERMINAL


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT, JobStatus.EXPIRED}
)

# The legal moves. A status may also stay where it is (an update without a move),
# except an end state, which never changes again.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
    ),
    JobStatus.RUNNING: frozenset({JobStatus.REQUIRES_ACTION} | TERMINAL),
    JobStatus.REQUIRES_ACTION: frozenset({JobStatus.RUNNING} | TERMINAL),
}


class IllegalTransition(Exception):
    """A status change the job's life cycle does not allow (for example out of an end state)."""

    def __init__(self, job_id: str, current: JobStatus, wanted: JobStatus) -> None:
        super().__init__(f"job {job_id}: cannot move from {current} to {wanted}")
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


def check_transition(job_id: str, current: JobStatus, wanted: JobStatus) -> None:
    """Raise `IllegalTransition` unless ``current -> wanted`` is a legal move."""
    if current == wanted and not current.ended:
        return
    if wanted not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(job_id, current, wanted)


class JobError(BaseModel):
    """Why a job failed: a stable code, a message a person can act on, and whether a retry could help."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    retryable: bool = False


class ToolCall(BaseModel):
    """One function call a run waits on, in the same shape for both run backends."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    arguments: str


class Usage(BaseModel):
    """Token usage of a job's model work, summed over its rounds."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Progress(BaseModel):
    """Counts for jobs that move many items (indexing): never goes backwards while a job runs."""

    model_config = ConfigDict(extra="forbid")

    completed: int = 0
    failed: int = 0
    in_progress: int = 0
    total: int = 0


class JobRecord(BaseModel):
    """Everything known about one job; stored as JSON in Redis and returned to readers."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: JobKind
    status: JobStatus = JobStatus.QUEUED
    request: dict[str, Any]
    """The validated request, as JSON."""
    remote: dict[str, Any] = Field(default_factory=dict)
    """Remote ids (thread_id, run_id, conversation_id, response_id, vector_store_id, batch ids...)."""
    attempts: int = 0
    """How many times a worker has started this job."""
    retries: int = 0
    """Retryable API errors in a row on the current step (reset when a step succeeds)."""
    redrives: int = 0
    """How many times the watchdog found the job stopped and sent it on."""
    created_at: float
    started_at: float | None = None
    updated_at: float
    finished_at: float | None = None
    deadline_at: float | None = None
    """Unix time past which the job ends `timed_out`."""
    cancel_requested: bool = False
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """The calls the run waits on while `requires_action`."""
    progress: Progress | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    usage: Usage | None = None
    idempotency_key: str | None = None
    end_learnt_by: Literal["webhook", "poll"] | None = None
    """How the system learnt that the job's remote run ended: from a webhook, or by polling."""

    # --- typed views of the result (the stored JSON stays as it is) ------------------------------
    def typed_result(self) -> TypedResult | None:
        """The result as the model of this job's kind (`schemas.results`); None while there is none.

        A run that ended without a result (failed, cancelled) still has its usage and tool rounds.
        """
        if self.kind == JobKind.RUN:
            return self.run_result()
        if self.kind == JobKind.INDEX:
            return self.index_result()
        return self.cleanup_result()

    def run_result(self) -> RunResult | None:
        """The result of a run job (text, annotations, file ids, usage, tool rounds); None while it has
        neither a result nor usage. `WrongKind` for another kind."""
        from schemas.results import run_result

        self._require_kind(JobKind.RUN)
        if self.result is None and self.usage is None:
            return None
        return run_result(self.result, self.usage, self.remote)

    def index_result(self) -> IndexResult | None:
        """The result of an indexing job (store id, counts, failed files with their errors); None while
        there is none. `WrongKind` for another kind."""
        from schemas.results import IndexResult

        self._require_kind(JobKind.INDEX)
        return None if self.result is None else IndexResult.model_validate(self.result)

    def cleanup_result(self) -> CleanupResult | None:
        """The result of a clean-up job (counts per target); None while there is none. `WrongKind` for
        another kind."""
        from schemas.results import CleanupResult

        self._require_kind(JobKind.CLEANUP)
        return None if self.result is None else CleanupResult.model_validate(self.result)

    def _require_kind(self, kind: JobKind) -> None:
        if self.kind != kind:
            raise WrongKind(f"job {self.id} is a {self.kind.value} job, not a {kind.value} job")


class WrongKind(TypeError):
    """A typed result asked of a job of another kind (``index_result()`` of a run job)."""


class JobEvent(BaseModel):
    """One entry of the event stream."""

    model_config = ConfigDict(extra="forbid")

    stream_id: str = ""
    """The Redis stream id (empty before it is written)."""
    type: str
    """`job.queued`, `job.started`, `job.progress`, `job.redriven`, `job.requires_action` or
    `job.<end status>`."""
    job_id: str
    kind: JobKind
    status: JobStatus
    at: float
    data: dict[str, Any] = Field(default_factory=dict)
