"""The inventory: every thread, conversation, vector store and file this system created or used, in Redis.

Threads cannot be listed through the API, so whatever is not recorded here can never be cleaned up.
Threads and conversations sit in sorted sets scored by their last activity (a job started on them or
ended there); the ones a producer handed in, rather than ones created here, are also noted as
*borrowed*, so the clean-up leaves them alone by default. Vector stores and files are plain sets: a
store's activity is its own ``last_active_at``, and a file's use is whether a store still holds it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

import redis

from worker import constants as c

Redis = redis.Redis | redis.client.Pipeline


class Conversational(StrEnum):
    """The two kinds of object a run happens on, each with its own sorted set."""

    THREAD = "thread"
    """An Assistants thread (``thread_id``)."""
    CONVERSATION = "conversation"
    """A Responses conversation (``conversation_id``)."""

    @property
    def key(self) -> str:
        """The sorted set this kind is recorded in."""
        return c.INVENTORY_THREADS_KEY if self is Conversational.THREAD else c.INVENTORY_CONVERSATIONS_KEY


_FIELDS = {"thread_id": Conversational.THREAD, "conversation_id": Conversational.CONVERSATION}


def _pairs(ids: Mapping[str, Any]) -> list[tuple[Conversational, str]]:
    """The thread and conversation ids among ``ids`` (a job's ``remote`` or request fields)."""
    return [(kind, str(ids[name])) for name, kind in _FIELDS.items() if ids.get(name)]


def record_created(client: Redis, ids: Mapping[str, Any], at: float | None = None) -> None:
    """Record the threads or conversations in ``ids`` (e.g. ``{"thread_id": ...}``) as created here."""
    now = time.time() if at is None else at
    for kind, object_id in _pairs(ids):
        client.zadd(kind.key, {object_id: now})
        client.srem(c.INVENTORY_BORROWED_KEY, object_id)


def record_used(client: redis.Redis, ids: Mapping[str, Any], at: float | None = None) -> None:
    """Record the threads or conversations in ``ids`` as used now; one first seen here is borrowed."""
    now = time.time() if at is None else at
    for kind, object_id in _pairs(ids):
        # ZADD answers 1 only for a member it added: one this system created is recorded already (it was
        # recorded before anyone could learn its id), so a new member is one a producer handed in.
        if client.zadd(kind.key, {object_id: now}) == 1:
            client.sadd(c.INVENTORY_BORROWED_KEY, object_id)


def touch(client: Redis, ids: Mapping[str, Any], at: float | None = None) -> None:
    """Move the last activity of the recorded threads or conversations in ``ids`` to now (or ``at``).

    Only ids already recorded are touched (``XX``): a job ending never brings back one the clean-up
    just deleted.
    """
    now = time.time() if at is None else at
    for kind, object_id in _pairs(ids):
        client.zadd(kind.key, {object_id: now}, xx=True)


def idle(client: redis.Redis, kind: Conversational, before: float) -> list[tuple[str, float]]:
    """``(id, last activity)`` of each recorded object of ``kind`` idle since ``before``, oldest first."""
    rows: list[Any] = client.zrangebyscore(kind.key, "-inf", f"({before}", withscores=True)
    return [(_text(member), float(score)) for member, score in rows]


def last_active(client: redis.Redis, kind: Conversational, object_id: str) -> float | None:
    """When ``object_id`` was last used, or None when it is not recorded."""
    score = client.zscore(kind.key, object_id)
    return None if score is None else float(score)


def borrowed(client: redis.Redis, object_ids: Iterable[str]) -> set[str]:
    """Those of ``object_ids`` a producer handed in rather than this system created."""
    ids = list(object_ids)
    if not ids:
        return set()
    flags = client.smismember(c.INVENTORY_BORROWED_KEY, ids)
    return {object_id for object_id, flag in zip(ids, flags, strict=True) if flag}


def forget(client: Redis, kind: Conversational, object_id: str) -> None:
    """Drop a deleted (or vanished) thread or conversation from the inventory."""
    client.zrem(kind.key, object_id)
    client.srem(c.INVENTORY_BORROWED_KEY, object_id)


# --- vector stores and files ---------------------------------------------------------------------
def record_store(client: Redis, store_id: str) -> None:
    """Record a vector store this system created (it also carries ``managed_by`` in its metadata)."""
    client.sadd(c.INVENTORY_STORES_KEY, store_id)


def record_files(client: Redis, file_ids: Iterable[str]) -> None:
    """Record files this system uploaded."""
    ids = list(file_ids)
    if ids:
        client.sadd(c.INVENTORY_FILES_KEY, *ids)


def stores(client: redis.Redis) -> set[str]:
    """Every vector store id this system created and has not yet deleted."""
    return {_text(m) for m in client.smembers(c.INVENTORY_STORES_KEY)}


def files(client: redis.Redis) -> set[str]:
    """Every file id this system uploaded and has not yet deleted."""
    return {_text(m) for m in client.smembers(c.INVENTORY_FILES_KEY)}


def forget_store(client: Redis, store_id: str) -> None:
    """Drop a deleted vector store from the inventory."""
    client.srem(c.INVENTORY_STORES_KEY, store_id)


def forget_file(client: Redis, file_id: str) -> None:
    """Drop a deleted file from the inventory."""
    client.srem(c.INVENTORY_FILES_KEY, file_id)


def managed_metadata() -> dict[str, str]:
    """The metadata pair that marks a vector store as this system's."""
    return {c.MANAGED_BY_KEY: c.MANAGED_BY}


def is_managed(metadata: Mapping[str, Any] | None) -> bool:
    """Whether a vector store's metadata marks it as created by this system."""
    return bool(metadata) and (metadata or {}).get(c.MANAGED_BY_KEY) == c.MANAGED_BY


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
