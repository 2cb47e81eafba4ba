"""What the synchronous and the asyncio producer clients share: checking a request, building its record,
planning the start messages, the changes a cancel or tool outputs make to a record, and their errors.

Everything here is pure (no I/O but the path checks' look at the disk), so `worker.client.Jobs` and
`worker.aclient.AsyncJobs` differ only in how they reach Redis and the broker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.job import JobKind, JobRecord, JobStatus
from worker import constants as c
from worker.dispatch import new_task_id
from worker.paths import resolve_paths
from worker.polls import TaskDue
from worker.settings import Settings
from worker.store.jobs import NewJob, Submitted, new_job_id

if TYPE_CHECKING:
    from schemas.requests import CleanupRequest, RunRequest, ToolOutput, VectorStoreBatchRequest

    AnyRequest = RunRequest | VectorStoreBatchRequest | CleanupRequest
    RequestLike = AnyRequest | Mapping[str, Any]
    OutputLike = ToolOutput | Mapping[str, Any]


class ToolOutputsRejected(ValueError):
    """A set of tool outputs that does not answer the job's pending calls exactly; nothing was sent."""


class JobTimeout(TimeoutError):
    """``wait(..., raise_on_timeout=True)`` ran out of time; the job goes on (``record`` is how it was)."""

    def __init__(self, record: JobRecord, timeout: float | None):
        self.record = record
        super().__init__(f"job {record.id} is still {record.status.value} after {timeout:g} s")


@dataclass(frozen=True)
class JobRef:
    """What `Jobs.submit` returns at once."""

    id: str
    created: bool
    """False when the idempotency key named a job that already existed (nothing was dispatched)."""


def start_task(kind: JobKind) -> str:
    """The Celery task that starts jobs of ``kind``."""
    return c.TASK_START.format(kind=kind.value)


def queues_of(kind: JobKind, settings: Settings) -> list[str]:
    """The queues the steps of a job of ``kind`` go to (a worker must consume them for it to move)."""
    if kind == JobKind.RUN:
        return [settings.queue_runs, settings.queue_runs_active]
    return [settings.queue_indexing if kind == JobKind.INDEX else settings.queue_maintenance]


# --- submit -----------------------------------------------------------------------------------
def prepare(request: RequestLike, settings: Settings, *, check_paths: bool) -> AnyRequest:
    """``request`` parsed and checked: a run's backend rules, an indexing job's paths made absolute (and,
    with ``check_paths``, looked at: `worker.paths.BadPaths` names each bad one). Raises
    `pydantic.ValidationError` naming each bad field; nothing is written then."""
    from schemas.requests import RunRequest, VectorStoreBatchRequest, parse_request

    parsed = parse_request(request) if isinstance(request, Mapping) else request
    if isinstance(parsed, RunRequest):
        return parsed.with_backend(settings.run_backend)
    if isinstance(parsed, VectorStoreBatchRequest) and parsed.paths:
        paths = resolve_paths(parsed.paths, check=check_paths, refuse_bad=not parsed.skip_bad_paths)
        if paths != parsed.paths:  # validated again: two names of one file are duplicates
            data = parsed.model_dump(mode="json", exclude_none=True)
            return VectorStoreBatchRequest.model_validate({**data, "paths": paths})
    return parsed


def new_record(request: AnyRequest, settings: Settings) -> JobRecord:
    """A `queued` record for ``request``, with a fresh id and its deadline."""
    now = time.time()
    deadline = request.deadline_s or settings.default_deadline
    return JobRecord(
        id=new_job_id(),
        kind=JobKind(request.kind),
        request=request.model_dump(mode="json", exclude_none=True),
        created_at=now,
        updated_at=now,
        deadline_at=now + deadline,
        idempotency_key=request.idempotency_key,
    )


@dataclass(frozen=True)
class Send:
    """One start message to publish: Celery task ``task`` with ``args`` under ``task_id``."""

    task: str
    args: list[Any]
    task_id: str
    job_ids: list[str]


@dataclass(frozen=True)
class Plan:
    """New jobs to write (each with its start staged in the outbox) and the messages carrying the starts,
    up to `SUBMIT_CHUNK` jobs each, one kind per message."""

    jobs: list[NewJob]
    chunks: list[tuple[str, JobKind, list[str]]]
    """``(task id, kind, job ids)`` per start message."""

    def sends(self, submitted: Submitted) -> list[Send]:
        """The messages to publish once ``submitted``: only the jobs written (not those an idempotency key
        already named)."""
        created = {job_id for job_id, was_created in submitted.results if was_created}
        sends = []
        for task_id, kind, chunk in self.chunks:
            fresh = [job_id for job_id in chunk if job_id in created]
            if fresh:
                sends.append(Send(start_task(kind), [fresh], task_id, fresh))
        return sends


def plan(records: Sequence[JobRecord]) -> Plan:
    """The `Plan` for ``records``."""
    chunks: list[tuple[str, JobKind, list[str]]] = []
    by_kind: dict[JobKind, list[str]] = {}
    for record in records:
        by_kind.setdefault(record.kind, []).append(record.id)
    task_of: dict[str, str] = {}
    for kind, job_ids in by_kind.items():
        for i in range(0, len(job_ids), c.SUBMIT_CHUNK):
            chunk, task_id = job_ids[i : i + c.SUBMIT_CHUNK], new_task_id()
            chunks.append((task_id, kind, chunk))
            task_of.update(dict.fromkeys(chunk, task_id))
    jobs = [
        NewJob(r, queued_thread(r), TaskDue(start_task(r.kind), [[r.id]]), task_of[r.id]) for r in records
    ]
    return Plan(jobs, chunks)


def queued_thread(record: JobRecord) -> str | None:
    """The thread or conversation a run waits its turn on (strategy ``enqueue``), if any."""
    req = record.request
    if record.kind != JobKind.RUN or req.get("strategy", "enqueue") != "enqueue":
        return None
    thread = req.get("thread_id") or req.get("conversation_id")
    return str(thread) if thread else None


def retry_request(record: JobRecord) -> dict[str, Any]:
    """A dead job's request, to submit again as a new job (its idempotency key dropped)."""
    request = dict(record.request)
    request.pop("idempotency_key", None)
    return request


# --- act on a job -----------------------------------------------------------------------------
def cancel_change(record: JobRecord) -> JobRecord | None:
    """The record after a cancel: a queued job ends `cancelled` at once; a running one is marked for its
    cancel task. None when there is nothing to do (it ended, or a cancel was asked already)."""
    if record.status.ended or record.cancel_requested:
        return None
    if record.status == JobStatus.QUEUED:
        record.status = JobStatus.CANCELLED
    record.cancel_requested = True
    return record


def needs_cancel_task(before: JobRecord, after: JobRecord) -> bool:
    """Whether a cancel must still reach the job's remote work through a task."""
    return not before.status.ended and not after.status.ended and not before.cancel_requested


def parse_outputs(job_id: str, outputs: Sequence[OutputLike]) -> tuple[list[dict[str, str]], list[str]]:
    """Tool outputs checked one by one: their JSON, and the call ids they answer."""
    from schemas.requests import ToolOutputsRequest

    request = ToolOutputsRequest.model_validate({"job_id": job_id, "tool_outputs": list(outputs)})
    return [o.model_dump(mode="json") for o in request.tool_outputs], [
        o.tool_call_id for o in request.tool_outputs
    ]


def outputs_change(job_id: str, answered: Sequence[str]) -> Any:
    """The change tool outputs make to a record: back to running, pending calls cleared; refused
    (`ToolOutputsRejected`) unless the job waits and ``answered`` names each pending call once."""

    def change(record: JobRecord) -> JobRecord:
        if record.status != JobStatus.REQUIRES_ACTION:
            raise ToolOutputsRejected(f"job {job_id} is {record.status}, not waiting for tool outputs")
        check_outputs([t.id for t in record.tool_calls], answered)
        record.status = JobStatus.RUNNING
        record.tool_calls = []
        return record

    return change


def check_outputs(pending: Sequence[str], answered: Sequence[str]) -> None:
    """Raise `ToolOutputsRejected` unless ``answered`` names each ``pending`` call id exactly once."""
    problems = []
    unknown = sorted(set(answered) - set(pending))
    missing = [p for p in pending if p not in answered]
    twice = sorted({a for a in answered if answered.count(a) > 1})
    if unknown:
        problems.append(f"unknown tool_call_id {', '.join(unknown)}")
    if missing:
        problems.append(f"no output for {', '.join(missing)}")
    if twice:
        problems.append(f"more than one output for {', '.join(twice)}")
    if problems:
        raise ToolOutputsRejected(
            "tool outputs refused: " + "; ".join(problems) + f" (pending: {', '.join(pending)})"
        )


def waited(record: JobRecord, timeout: float | None, raise_on_timeout: bool) -> JobRecord:
    """What `wait` gives back: the record, or `JobTimeout` when asked and the job has not ended."""
    if raise_on_timeout and not record.status.ended:
        raise JobTimeout(record, timeout)
    return record
