"""The producer client: submit jobs, read and wait for them, cancel them, answer their tool calls.

jobs = Jobs()
ref = jobs.submit(RunRequest(assistant_id="asst_1", messages=[...]))
record = jobs.wait(ref.id, timeout=60)
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery

from schemas.job import JobEvent, JobKind, JobRecord, JobStatus
from schemas.requests import (
    CleanupRequest,
    RunRequest,
    ToolOutput,
    ToolOutputsRequest,
    VectorStoreBatchRequest,
    parse_request,
)
from worker import constants as c
from worker.connections import make_store
from worker.dispatch import Dispatcher, new_task_id
from worker.polls import TaskDue
from worker.settings import Settings, get_settings
from worker.store import JobNotFound, NewJob, Store, new_job_id

log = logging.getLogger(__name__)

PRODUCER_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
"""How hard a producer tries to publish before leaving the message to the outbox."""

AnyRequest = RunRequest | VectorStoreBatchRequest | CleanupRequest


class ToolOutputsRejected(ValueError):
    """A set of tool outputs that does not answer the job's pending calls exactly; nothing was sent."""


@dataclass(frozen=True)
class JobRef:
    """What `Jobs.submit` returns at once."""

    id: str
    created: bool
    """False when the idempotency key named a job that already existed (nothing was dispatched)."""


def start_task(kind: JobKind) -> str:
    """The Celery task that starts jobs of ``kind``."""
    return c.TASK_START.format(kind=kind.value)


class Jobs:
    """Submit and follow jobs. Thread-safe; one per process is plenty."""

    def __init__(
        self, settings: Settings | None = None, store: Store | None = None, celery: Celery | None = None
    ):
        self.settings = settings or get_settings()
        self.store = store or make_store(self.settings)
        if celery is None:
            from worker.app import app as default_app

            celery = default_app
        self.celery: Celery = celery
        self.dispatcher = Dispatcher(self.store.schedule, self._publish, self.settings.outbox_grace)

    def _publish(self, name: str, args: list[Any], task_id: str) -> None:
        # A short retry: when the broker is down the outbox sends the message later, so a producer never
        # blocks for long on it.
        self.celery.send_task(name, args=args, task_id=task_id, retry_policy=PRODUCER_PUBLISH_RETRY)

    # --- submit ---------------------------------------------------------------------------
    def submit(self, request: AnyRequest | Mapping[str, Any]) -> JobRef:
        """Validate ``request``, write the job `queued`, dispatch its start and return its id at once.

        Bad input raises `pydantic.ValidationError` naming each bad field; nothing is written then.
        """
        return self.submit_many([request])[0]

    def submit_many(self, requests: Iterable[AnyRequest | Mapping[str, Any]]) -> list[JobRef]:
        """`submit` for many requests: all validated first, then written in one round trip, each with its
        start staged in the outbox, then dispatched in a few start messages (up to `SUBMIT_CHUNK` jobs
        each). When the broker cannot be reached the jobs are still accepted: a worker's poll loop sends
        their starts once the grace period passes."""
        records = [self._record(self._validate(r)) for r in requests]
        chunks: list[tuple[str, list[str]]] = []
        task_of: dict[str, str] = {}
        by_kind: dict[JobKind, list[str]] = {}
        for record in records:
            by_kind.setdefault(record.kind, []).append(record.id)
        for job_ids in by_kind.values():
            for i in range(0, len(job_ids), c.SUBMIT_CHUNK):
                chunk, task_id = job_ids[i : i + c.SUBMIT_CHUNK], new_task_id()
                chunks.append((task_id, chunk))
                task_of.update(dict.fromkeys(chunk, task_id))
        new = [
            NewJob(r, _queued_thread(r), TaskDue(start_task(r.kind), [[r.id]]), task_of[r.id])
            for r in records
        ]
        submitted = self.store.jobs.submit(new, self.settings.outbox_grace)
        refs = [JobRef(job_id, created) for job_id, created in submitted.results]
        created = {ref.id for ref in refs if ref.created}
        kinds = {r.id: r.kind for r in records}
        for task_id, chunk in chunks:
            fresh = [job_id for job_id in chunk if job_id in created]
            if not fresh:
                continue
            try:
                self.dispatcher.sent(start_task(kinds[fresh[0]]), [fresh], task_id, fresh, submitted.token)
            except Exception as exc:  # the broker is down: the outbox sends them later
                log.warning(
                    "could not send the start of %d job(s) (%s); a worker will send it", len(fresh), exc
                )
        return refs

    def _validate(self, request: AnyRequest | Mapping[str, Any]) -> AnyRequest:
        parsed = parse_request(request) if isinstance(request, Mapping) else request
        if isinstance(parsed, RunRequest):
            parsed = parsed.with_backend(self.settings.run_backend)
        return parsed

    def _record(self, request: AnyRequest) -> JobRecord:
        now = time.time()
        deadline = request.deadline_s or self.settings.default_deadline
        return JobRecord(
            id=new_job_id(),
            kind=JobKind(request.kind),
            request=request.model_dump(mode="json", exclude_none=True),
            created_at=now,
            updated_at=now,
            deadline_at=now + deadline,
            idempotency_key=request.idempotency_key,
        )

    # --- read -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        """The job's record; `JobNotFound` when there is none."""
        return self.store.jobs.require(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job ends or ``timeout`` seconds pass; the record either way."""
        return self.store.jobs.wait(job_id, timeout)

    def list(self, status: JobStatus | None = None, limit: int = 50) -> list[JobRecord]:
        """The newest jobs, of one status or all."""
        return self.store.jobs.list(status, limit)

    def events(
        self, last_id: str | None = None, block_ms: int | None = None, count: int = 100
    ) -> builtins.list[JobEvent]:
        """Events after ``last_id`` (all when None), blocking up to ``block_ms`` for new ones."""
        return self.store.jobs.events(last_id, block_ms, count)

    # --- act ------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job. A queued job ends `cancelled` at once and never reaches OpenAI; a running
        one has its remote work cancelled and ends `cancelled` once the remote side says so."""

        def change(record: JobRecord) -> JobRecord | None:
            if record.status.ended or record.cancel_requested:
                return None
            if record.status == JobStatus.QUEUED:
                record.status = JobStatus.CANCELLED
            record.cancel_requested = True
            return record

        before = self.get(job_id)
        after = self.store.jobs.update(job_id, change)
        if not before.status.ended and not after.status.ended:
            self.dispatcher.send(c.TASK_CANCEL.format(kind=after.kind.value), [job_id])
        return after

    def submit_tool_outputs(
        self, job_id: str, outputs: Sequence[ToolOutput | Mapping[str, Any]]
    ) -> JobRecord:
        """Answer the calls a job waits on. The set is checked first: every pending call id
        answered exactly once and no unknown id, else `ToolOutputsRejected` and the job keeps waiting."""
        request = ToolOutputsRequest.model_validate({"job_id": job_id, "tool_outputs": list(outputs)})
        answered = [o.tool_call_id for o in request.tool_outputs]

        def change(record: JobRecord) -> JobRecord:
            if record.status != JobStatus.REQUIRES_ACTION:
                raise ToolOutputsRejected(f"job {job_id} is {record.status}, not waiting for tool outputs")
            check_outputs([t.id for t in record.tool_calls], answered)
            record.status = JobStatus.RUNNING
            record.tool_calls = []
            return record

        record = self.store.jobs.update(job_id, change)
        # Sent through the outbox: if the broker is down now, a worker sends the outputs later.
        self.dispatcher.send(
            c.TASK_TOOL_OUTPUTS.format(kind=record.kind.value),
            [job_id, [o.model_dump(mode="json") for o in request.tool_outputs]],
        )
        return record

    # --- dead letters ---------------------------------------------------------------------
    def dead(self, limit: int = 100) -> builtins.list[JobRecord]:
        """Jobs that exhausted their retries, newest first."""
        return self.store.jobs.dead(limit)

    def retry_dead(self, job_id: str) -> JobRef:
        """Submit a dead-lettered job's request again as a new job and take it off the dead-letter set.

        The dead job itself stays as it ended: an ended job never changes again.
        """
        record = self.get(job_id)
        if not self.store.jobs.undead(job_id):
            raise JobNotFound(job_id)
        request = dict(record.request)
        request.pop("idempotency_key", None)
        return self.submit(request)


def _queued_thread(record: JobRecord) -> str | None:
    req = record.request
    if record.kind != JobKind.RUN or req.get("strategy", "enqueue") != "enqueue":
        return None
    thread = req.get("thread_id") or req.get("conversation_id")
    return str(thread) if thread else None


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
