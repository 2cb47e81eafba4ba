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
from worker.store import keys
from worker.store.codec import text

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
        return keys.INVENTORY_THREADS if self is Conversational.THREAD else keys.INVENTORY_CONVERSATIONS


_FIELDS = {"thread_id": Conversational.THREAD, "conversation_id": Conversational.CONVERSATION}


def _pairs(ids: Mapping[str, Any]) -> list[tuple[Conversational, str]]:
    """The thread and conversation ids among ``ids`` (a job's ``remote`` or request fields)."""
    return [(kind, str(ids[name])) for name, kind in _FIELDS.items() if ids.get(name)]


class Inventory:
    """The inventory on one Redis client (or pipeline, to record in the same round trip as other writes)."""

    def __init__(self, client: Redis):
        self.redis = client

    def record_created(self, ids: Mapping[str, Any], at: float | None = None) -> None:
        """Record the threads or conversations in ``ids`` (e.g. ``{"thread_id": ...}``) as created here."""
        now = time.time() if at is None else at
        for kind, object_id in _pairs(ids):
            self.redis.zadd(kind.key, {object_id: now})
            self.redis.srem(keys.INVENTORY_BORROWED, object_id)

    def record_created_many(self, many: Iterable[Mapping[str, Any]], at: float | None = None) -> None:
        """`record_created` for the ids of many jobs, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        inventory = Inventory(pipe)  # type: ignore[arg-type]  # the owner queues its own commands
        for ids in many:
            inventory.record_created(ids, at)
        pipe.execute()

    def record_used(self, ids: Mapping[str, Any], at: float | None = None) -> None:
        """Record the threads or conversations in ``ids`` as used now; one first seen here is borrowed."""
        now = time.time() if at is None else at
        for kind, object_id in _pairs(ids):
            # ZADD answers 1 only for a member it added: one this system created is recorded already (it was
            # recorded before anyone could learn its id), so a new member is one a producer handed in.
            if self.redis.zadd(kind.key, {object_id: now}) == 1:
                self.redis.sadd(keys.INVENTORY_BORROWED, object_id)

    def touch(self, ids: Mapping[str, Any], at: float | None = None) -> None:
        """Move the last activity of the recorded threads or conversations in ``ids`` to now (or ``at``).

        Only ids already recorded are touched (``XX``): a job ending never brings back one the clean-up
        just deleted.
        """
        now = time.time() if at is None else at
        for kind, object_id in _pairs(ids):
            self.redis.zadd(kind.key, {object_id: now}, xx=True)

    def idle(self, kind: Conversational, before: float) -> list[tuple[str, float]]:
        """``(id, last activity)`` of each recorded object of ``kind`` idle since ``before``, oldest first."""
        rows: list[Any] = self.redis.zrangebyscore(kind.key, "-inf", f"({before}", withscores=True)
        return [(text(member), float(score)) for member, score in rows]

    def last_active(self, kind: Conversational, object_id: str) -> float | None:
        """When ``object_id`` was last used, or None when it is not recorded."""
        score = self.redis.zscore(kind.key, object_id)
        return None if score is None else float(score)

    def borrowed(self, object_ids: Iterable[str]) -> set[str]:
        """Those of ``object_ids`` a producer handed in rather than this system created."""
        ids = list(object_ids)
        if not ids:
            return set()
        flags = self.redis.smismember(keys.INVENTORY_BORROWED, ids)
        return {object_id for object_id, flag in zip(ids, flags, strict=True) if flag}

    def forget(self, kind: Conversational, object_id: str) -> None:
        """Drop a deleted (or vanished) thread or conversation from the inventory."""
        self.redis.zrem(kind.key, object_id)
        self.redis.srem(keys.INVENTORY_BORROWED, object_id)

    # --- vector stores and files -----------------------------------------------------------------
    def record_store(self, store_id: str) -> None:
        """Record a vector store this system created (it also carries ``managed_by`` in its metadata)."""
        self.redis.sadd(keys.INVENTORY_STORES, store_id)

    def record_files(self, file_ids: Iterable[str]) -> None:
        """Record files this system uploaded."""
        ids = list(file_ids)
        if ids:
            self.redis.sadd(keys.INVENTORY_FILES, *ids)

    def stores(self) -> set[str]:
        """Every vector store id this system created and has not yet deleted."""
        return {text(m) for m in self.redis.smembers(keys.INVENTORY_STORES)}

    def files(self) -> set[str]:
        """Every file id this system uploaded and has not yet deleted."""
        return {text(m) for m in self.redis.smembers(keys.INVENTORY_FILES)}

    def known_files(self, file_ids: list[str]) -> list[bool]:
        """Whether each of ``file_ids`` is recorded (some job uploaded it)."""
        if not file_ids:
            return []
        return [bool(flag) for flag in self.redis.smismember(keys.INVENTORY_FILES, file_ids)]

    def forget_store(self, store_id: str) -> None:
        """Drop a deleted vector store from the inventory."""
        self.redis.srem(keys.INVENTORY_STORES, store_id)

    def forget_file(self, file_id: str) -> None:
        """Drop a deleted file from the inventory."""
        self.redis.srem(keys.INVENTORY_FILES, file_id)


def managed_metadata() -> dict[str, str]:
    """The metadata pair that marks a vector store as this system's."""
    return {c.MANAGED_BY_KEY: c.MANAGED_BY}


def is_managed(metadata: Mapping[str, Any] | None) -> bool:
    """Whether a vector store's metadata marks it as created by this system."""
    return bool(metadata) and (metadata or {}).get(c.MANAGED_BY_KEY) == c.MANAGED_BY
