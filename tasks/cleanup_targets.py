"""What a clean-up may delete, one function per target: each finds the candidates and says, for every one
it leaves alone, why. Nothing here deletes; `tasks.cleanup_flow` does that, paced and in chunks.

Only what this system created is a candidate unless ``include_unmanaged`` says otherwise: threads and
conversations recorded as created here (see `worker.store.inventory`), vector stores in the inventory or
tagged ``managed_by``, files in the inventory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import openai

from schemas.requests import CleanupTarget
from worker import constants as c
from worker.store import Store
from worker.store.inventory import Conversational, is_managed

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
def idle_objects(store: Store, kind: Conversational, scope: Scope) -> Findings:
    """Recorded threads (or conversations) idle past the limit, less those a live job holds or awaits
    and, by default, those a producer handed in."""
    found = Findings()
    idle = [object_id for object_id, _ in store.inventory.idle(kind, scope.now - scope.idle_s)]
    held = store.threads.busy(idle)
    lent = set() if scope.include_unmanaged else store.inventory.borrowed(idle)
    for object_id in idle:
        if object_id in held:
            found.skip(object_id, ACTIVE_JOB)
        elif object_id in lent:
            found.skip(object_id, NOT_OURS)
        else:
            found.delete.append(object_id)
    return found


# --- vector stores ---------------------------------------------------------------------------------
def stale_stores(store: Store, api: openai.OpenAI, scope: Scope) -> Findings:
    """Vector stores whose ``last_active_at`` is older than the store limit and that this system created.

    One listing (100 stores a page) gives every store's activity and metadata, far fewer requests than
    a retrieve per recorded store; a recorded store the listing lacks is gone already.
    """
    found = Findings()
    ours = store.inventory.stores()
    seen: set[str] = set()
    cutoff = scope.now - scope.store_idle_s
    for vs in api.vector_stores.list(limit=100):
        seen.add(vs.id)
        last = vs.last_active_at or vs.created_at
        if last >= cutoff:
            continue
        if vs.id in ours or is_managed(vs.metadata) or scope.include_unmanaged:
            found.delete.append(vs.id)
        else:
            found.skip(vs.id, NOT_OURS)
    found.gone = sorted(ours - seen)
    return found


# --- files -------------------------------------------------------------------------------------------
def store_files(api: openai.OpenAI) -> set[str]:
    """Every file id any vector store holds (all stores, ours or not: a producer's store may hold ours)."""
    held: set[str] = set()
    for vs in api.vector_stores.list(limit=100):
        held.update(f.id for f in api.vector_stores.files.list(vs.id, limit=100))
    return held


def orphan_files(store: Store, api: openai.OpenAI, scope: Scope) -> Findings:
    """Files this system uploaded that no vector store and no pending job refers to."""
    found = Findings()
    ours = store.inventory.files()
    in_stores = store_files(api)
    pending = store.pending_files()
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
def old_jobs(store: Store, scope: Scope, *, dry_run: bool) -> Findings:
    """Index and dead-letter entries whose record expired, schedule entries of jobs that ended or are
    gone, and events older than the retention.

    Records of ended jobs expire by themselves (their TTL is the retention); what they leave behind is
    swept here, in Redis alone, so this target is done at once and never queued for deletion.
    """
    counts = store.jobs.sweep(dry_run=dry_run, events_before=scope.now - scope.result_ttl)
    orphans = store.jobs.ended_or_gone(list(store.schedule.entries()))
    if orphans and not dry_run:
        store.schedule.forget(orphans)
    return Findings(counts={**counts, "schedule_entries": len(orphans)})


def find(target: CleanupTarget, store: Store, api: openai.OpenAI, scope: Scope, dry_run: bool) -> Findings:
    """The findings of one target."""
    if target == CleanupTarget.THREADS:
        return idle_objects(store, Conversational.THREAD, scope)
    if target == CleanupTarget.CONVERSATIONS:
        return idle_objects(store, Conversational.CONVERSATION, scope)
    if target == CleanupTarget.VECTOR_STORES:
        return stale_stores(store, api, scope)
    if target == CleanupTarget.FILES:
        return orphan_files(store, api, scope)
    return old_jobs(store, scope, dry_run=dry_run)


def still_deletable(store: Store, target: CleanupTarget, object_id: str, scope: Scope) -> str | None:
    """Why an object planned for deletion must now be left alone (a job took it since), or None.

    Checked just before each delete: a chunk may run minutes after the plan.
    """
    if target not in (CleanupTarget.THREADS, CleanupTarget.CONVERSATIONS):
        return None
    kind = Conversational.THREAD if target == CleanupTarget.THREADS else Conversational.CONVERSATION
    if store.threads.busy([object_id]):
        return ACTIVE_JOB
    last = store.inventory.last_active(kind, object_id)
    if last is not None and last >= time.time() - scope.idle_s:
        return ACTIVE_JOB
    return None
