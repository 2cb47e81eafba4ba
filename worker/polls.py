"""The poll schedule's entries: what the poll loop does when a job falls due, one dataclass per kind.

An entry is stored as JSON with readable names (`encode`, `decode`). ``op`` tells the kinds apart: a
run or background response to retrieve (`RunPoll`), an indexing job's open file batches (`BatchPoll`), or
a Celery task to send when due (`TaskDue`: a deferred retry, or a start in the outbox).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from schemas.job import JobKind


@dataclass(frozen=True, slots=True)
class RunPoll:
    """Retrieve a run (or background response) and act on its status."""

    op: ClassVar[str] = "run"
    path: str
    """The API path retrieved, relative to the base URL: ``/threads/{t}/runs/{r}`` or ``/responses/{id}``."""
    deadline: float | None = None
    """Unix time past which the remote run is cancelled and the job times out."""
    polls: int = 0
    """Polls so far that saw the run active: the backoff's attempt number."""
    errors: int = 0
    """Retryable poll errors in a row (a good poll resets it)."""
    waiting: bool = False
    """The run waits for tool outputs: nothing changes until they come or it expires, so look rarely."""
    cancelling: bool = False
    """A cancel was sent; past the deadline's grace the job ends whatever the API says."""
    safety: bool = False
    """Webhooks tell this job when its response ends: this poll is only the safety net, spaced
    `Settings.webhook_safety_poll` apart."""
    woken: bool = False
    """A webhook made this poll due (so the end, if it is one, was learnt from the webhook)."""


@dataclass(frozen=True, slots=True)
class BatchPoll:
    """Retrieve an indexing job's open file batches of the current round together."""

    op: ClassVar[str] = "batch"
    vector_store_id: str
    open: list[str]
    """Batch ids still indexing."""
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Batch id -> ``{"status", "file_counts"}`` of the round's batches that ended."""
    total: int = 0
    """Files the job indexes in all (the progress bar's total)."""
    base: dict[str, int] = field(default_factory=dict)
    """``completed`` and ``failed`` settled by earlier rounds (empty in the first round)."""
    round: int = 0
    deadline: float | None = None
    polls: int = 0
    errors: int = 0
    cancelling: bool = False
    seen: dict[str, int] | None = None
    """The progress last written to the record, so an unchanged poll writes nothing."""


@dataclass(frozen=True, slots=True)
class TaskDue:
    """Send Celery task ``task`` with ``args`` when due: a deferred step, or a start in the outbox."""

    op: ClassVar[str] = "task"
    task: str
    args: list[Any] = field(default_factory=list)


Entry = RunPoll | BatchPoll | TaskDue
"""Any schedule entry."""


def kind_of(entry: Entry) -> JobKind:
    """The kind of job an entry belongs to, which picks its schedule set: a run poll is a run's, a batch
    poll an indexing job's, a task's the kind its name says (``aj.{kind}.{step}``: a job's tasks are its
    kind's)."""
    if isinstance(entry, RunPoll):
        return JobKind.RUN
    if isinstance(entry, BatchPoll):
        return JobKind.INDEX
    named = entry.task.split(".")
    try:
        return JobKind(named[1] if len(named) > 2 else "")
    except ValueError:
        raise ValueError(f"task {entry.task!r} names no job kind (aj.KIND.STEP)") from None


_BY_OP: dict[str, type[Entry]] = {cls.op: cls for cls in (RunPoll, BatchPoll, TaskDue)}


def encode(entry: Entry) -> bytes:
    """An entry as stored: JSON with ``op`` and the entry's fields."""
    return orjson.dumps(
        {"op": entry.op, **{f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}}
    )


def decode(raw: bytes | str) -> Entry:
    """An entry from its stored JSON; `ValueError` for an unknown ``op`` or fields."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a schedule entry is a JSON object")
    op = data.pop("op", None)
    cls = _BY_OP.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ValueError(f"unknown schedule entry op {op!r}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ValueError(f"bad {op} schedule entry: {exc}") from None
