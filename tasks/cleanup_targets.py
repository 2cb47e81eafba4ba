"""What a clean-up may delete, one function per target: each finds the candidates and says, for every one
it leaves alone, why. Nothing here deletes; `tasks.cleanup_flow` does that, paced and in chunks.

Only what this system created is a candidate unless ``include_unmanaged`` says otherwise: threads and
conversations recorded as created here (see `worker.inventory`), vector stores in the inventory or tagged
``managed_by``, files in the inventory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson
import redis

from schemas.job import JobStatus
from schemas.requests import CleanupTarget
from tasks.threads import ThreadLocks
from worker import constants as c
from worker import inventory
from worker.inventory import Conversational

ACTIVE_JOB = "active job"
"""Skip reason: a live job holds or waits for the thread."""
NOT_OURS = "not created here"
"""Skip reason: this system did not create it (and unmanaged objects are not included)."""
IN_STORE = "in a vector store"
"""Skip reason: a vector store still holds the file."""
PENDING_JOB = "pending job"
"""Skip reason: a job that has not ended refers to the file."""
TOO_NEW = "too new"
"""Skip reason: the file was uploaded within `FILE_GRACE_S` and may be on its way into a batch."""

_LIVE = {JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.REQUIRES_ACTION.value}


@dataclass
class Findings:
    """One target's candidates for deletion and the objects it leaves alone, by reason."""

    delete: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    """Recorded in the inventory but no longer on the server: forgotten, nothing to delete."""
    counts: dict[str, int] = field(default_factory=dict)
    """Targets swept in Redis alone (jobs) report their counts here instead."""

    def skip(self, object_id: str, reason: str) -> None:
        """Leave ``object_id`` alone for ``reason``."""
        self.skipped.setdefault(reason, []).append(object_id)


@dataclass(frozen=True)
class Scope:
    """What one clean-up job looks at: the limits in force and whether unmanaged objects count."""

    now: float
    idle_s: float
    store_idle_s: float
    include_unmanaged: bool
    result_ttl: int


# --- threads and conversations -----------------------------------------------------------------
def busy(client: redis.Redis, thread_ids: Iterable[str]) -> set[str]:
    """Those of ``thread_ids`` whose holder or queue has a live (queued, running, waiting) job."""
    ids = list(thread_ids)
    pipe = client.pipeline(transaction=False)
    for thread in ids:
        active, queue = ThreadLocks.keys(thread)
        pipe.get(active)
        pipe.lrange(queue, 0, -1)
    replies = pipe.execute()
    waiting: dict[str, list[str]] = {}
    for index, thread in enumerate(ids):
        holder, queued = replies[2 * index], replies[2 * index + 1]
        waiting[thread] = [_text(j) for j in ([holder] if holder else []) + list(queued)]
    job_ids = sorted({j for js in waiting.values() for j in js})
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(c.JOB_KEY.format(id=job_id), "status")
    live = {j for j, s in zip(job_ids, pipe.execute(), strict=True) if s is not None and _text(s) in _LIVE}
    return {thread for thread, js in waiting.items() if live.intersection(js)}


def idle_objects(client: redis.Redis, kind: Conversational, scope: Scope) -> Findings:
    """Recorded threads (or conversations) idle past the limit, less those a live job holds or awaits
    and, by default, those a producer handed in."""
    found = Findings()
    idle = [object_id for object_id, _ in inventory.idle(client, kind, scope.now - scope.idle_s)]
    held = busy(client, idle)
    lent = set() if scope.include_unmanaged else inventory.borrowed(client, idle)
    for object_id in idle:
        if object_id in held:
            found.skip(object_id, ACTIVE_JOB)
        elif object_id in lent:
            found.skip(object_id, NOT_OURS)
        else:
            found.delete.append(object_id)
    return found


# --- vector stores ---------------------------------------------------------------------------------
def stale_stores(client: redis.Redis, api: openai.OpenAI, scope: Scope) -> Findings:
    """Vector stores whose ``last_active_at`` is older than the store limit and that this system created.

    One listing (100 stores a page) gives every store's activity and metadata, far fewer requests than
    a retrieve per recorded store; a recorded store the listing lacks is gone already.
    """
    found = Findings()
    ours = inventory.stores(client)
    seen: set[str] = set()
    cutoff = scope.now - scope.store_idle_s
    for store in api.vector_stores.list(limit=100):
        seen.add(store.id)
        last = store.last_active_at or store.created_at
        if last >= cutoff:
            continue
        if store.id in ours or inventory.is_managed(store.metadata) or scope.include_unmanaged:
            found.delete.append(store.id)
        else:
            found.skip(store.id, NOT_OURS)
    found.gone = sorted(ours - seen)
    return found


# --- files -------------------------------------------------------------------------------------------
def pending_job_files(client: redis.Redis) -> set[str]:
    """File ids that jobs not yet ended refer to: in their requests or uploaded for them so far."""
    job_ids: list[str] = []
    for status in _LIVE:
        job_ids += [_text(j) for j in client.zrange(c.STATUS_INDEX_KEY.format(status=status), 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(c.JOB_KEY.format(id=job_id), "record")
        pipe.hvals(c.UPLOADS_KEY.format(job_id=job_id))
    replies = pipe.execute()
    referenced: set[str] = set()
    for raw, uploads in zip(replies[::2], replies[1::2], strict=True):
        referenced.update(_text(f) for f in uploads)
        if raw:
            request: dict[str, Any] = orjson.loads(raw).get("request", {})
            referenced.update(str(f) for f in request.get("file_ids", []))
    return referenced


def store_files(api: openai.OpenAI) -> set[str]:
    """Every file id any vector store holds (all stores, ours or not: a producer's store may hold ours)."""
    held: set[str] = set()
    for store in api.vector_stores.list(limit=100):
        held.update(f.id for f in api.vector_stores.files.list(store.id, limit=100))
    return held


def orphan_files(client: redis.Redis, api: openai.OpenAI, scope: Scope) -> Findings:
    """Files this system uploaded that no vector store and no pending job refers to."""
    found = Findings()
    ours = inventory.files(client)
    in_stores = store_files(api)
    pending = pending_job_files(client)
    seen: set[str] = set()
    for file in api.files.list(limit=1000):
        seen.add(file.id)
        mine = file.id in ours
        if not mine and not scope.include_unmanaged:
            continue  # never ours: not even worth a mention
        if file.id in in_stores:
            found.skip(file.id, IN_STORE)
        elif file.id in pending:
            found.skip(file.id, PENDING_JOB)
        elif file.created_at > scope.now - c.FILE_GRACE_S:
            found.skip(file.id, TOO_NEW)
        else:
            found.delete.append(file.id)
    found.gone = sorted(ours - seen)
    return found


# --- job records and events --------------------------------------------------------------------------
def old_jobs(client: redis.Redis, scope: Scope, *, dry_run: bool) -> Findings:
    """Index and dead-letter entries whose record expired, and events older than the retention.

    Records of ended jobs expire by themselves (their TTL is the retention); what they leave behind is
    swept here, in Redis alone, so this target is done at once and never queued for deletion.
    """
    keys = [c.STATUS_INDEX_KEY.format(status=s.value) for s in JobStatus] + [c.DEAD_LETTER_KEY]
    entries = 0
    for key in keys:
        members = [_text(m) for m in client.zrange(key, 0, -1)]
        pipe = client.pipeline(transaction=False)
        for job_id in members:
            pipe.exists(c.JOB_KEY.format(id=job_id))
        gone = [m for m, exists in zip(members, pipe.execute(), strict=True) if not exists]
        entries += len(gone)
        if gone and not dry_run:
            client.zrem(key, *gone)
    min_id = f"{int((scope.now - scope.result_ttl) * 1000)}-0"
    if dry_run:
        events = len(client.xrange(c.EVENTS_STREAM, "-", f"({min_id}") or [])
    else:
        events = int(client.xtrim(c.EVENTS_STREAM, minid=min_id, approximate=False))
    return Findings(counts={"index_entries": entries, "events": events})


def find(
    target: CleanupTarget, client: redis.Redis, api: openai.OpenAI, scope: Scope, dry_run: bool
) -> Findings:
    """The findings of one target."""
    if target == CleanupTarget.THREADS:
        return idle_objects(client, Conversational.THREAD, scope)
    if target == CleanupTarget.CONVERSATIONS:
        return idle_objects(client, Conversational.CONVERSATION, scope)
    if target == CleanupTarget.VECTOR_STORES:
        return stale_stores(client, api, scope)
    if target == CleanupTarget.FILES:
        return orphan_files(client, api, scope)
    return old_jobs(client, scope, dry_run=dry_run)


def still_deletable(client: redis.Redis, target: CleanupTarget, object_id: str, scope: Scope) -> str | None:
    """Why an object planned for deletion must now be left alone (a job took it since), or None.

    Checked just before each delete: a chunk may run minutes after the plan.
    """
    if target not in (CleanupTarget.THREADS, CleanupTarget.CONVERSATIONS):
        return None
    kind = Conversational.THREAD if target == CleanupTarget.THREADS else Conversational.CONVERSATION
    if busy(client, [object_id]):
        return ACTIVE_JOB
    last = inventory.last_active(client, kind, object_id)
    if last is not None and last >= time.time() - scope.idle_s:
        return ACTIVE_JOB
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
