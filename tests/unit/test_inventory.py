"""The inventory's bookkeeping, on fakeredis: what is recorded, when it counts as idle, what is borrowed."""

from __future__ import annotations

import fakeredis
import pytest

from worker import inventory
from worker.inventory import Conversational

THREAD = Conversational.THREAD


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_created_threads_are_recorded_with_their_activity_and_listed_oldest_first(
    r: fakeredis.FakeRedis,
) -> None:
    # Given three threads created at different times
    inventory.record_created(r, {"thread_id": "thread_a"}, at=100.0)
    inventory.record_created(r, {"thread_id": "thread_b"}, at=50.0)
    inventory.record_created(r, {"thread_id": "thread_c"}, at=500.0)
    # When asking which are idle since before 200
    idle = inventory.idle(r, THREAD, before=200.0)
    # Then the two older ones, oldest first
    assert idle == [("thread_b", 50.0), ("thread_a", 100.0)]
    assert inventory.borrowed(r, ["thread_a", "thread_b", "thread_c"]) == set()


def test_touch_moves_activity_but_never_brings_back_a_forgotten_thread(r: fakeredis.FakeRedis) -> None:
    inventory.record_created(r, {"thread_id": "thread_a"}, at=100.0)
    inventory.touch(r, {"thread_id": "thread_a", "run_id": "run_1"}, at=900.0)
    assert inventory.last_active(r, THREAD, "thread_a") == 900.0
    # A job ending after the clean-up deleted its thread must not record it again.
    inventory.forget(r, THREAD, "thread_a")
    inventory.touch(r, {"thread_id": "thread_a"}, at=950.0)
    assert inventory.last_active(r, THREAD, "thread_a") is None


def test_a_thread_first_seen_from_a_producer_is_borrowed_but_one_created_here_stays_ours(
    r: fakeredis.FakeRedis,
) -> None:
    inventory.record_used(r, {"thread_id": "thread_given", "conversation_id": None}, at=10.0)
    inventory.record_created(r, {"thread_id": "thread_ours"}, at=10.0)
    inventory.record_used(r, {"thread_id": "thread_ours"}, at=20.0)
    assert inventory.borrowed(r, ["thread_given", "thread_ours"]) == {"thread_given"}
    assert inventory.last_active(r, THREAD, "thread_ours") == 20.0


def test_conversations_have_their_own_set(r: fakeredis.FakeRedis) -> None:
    inventory.record_created(r, {"conversation_id": "conv_1"}, at=1.0)
    assert inventory.idle(r, THREAD, before=10.0) == []
    assert inventory.idle(r, Conversational.CONVERSATION, before=10.0) == [("conv_1", 1.0)]


def test_stores_and_files_are_recorded_and_forgotten(r: fakeredis.FakeRedis) -> None:
    inventory.record_store(r, "vs_1")
    inventory.record_files(r, ["file-1", "file-2"])
    inventory.forget_file(r, "file-1")
    assert inventory.stores(r) == {"vs_1"}
    assert inventory.files(r) == {"file-2"}
    assert inventory.is_managed(inventory.managed_metadata())
    assert not inventory.is_managed({"managed_by": "someone-else"})
    assert not inventory.is_managed(None)
