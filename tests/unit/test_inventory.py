"""The inventory's bookkeeping, on fakeredis: what is recorded, when it counts as idle, what is borrowed."""

from __future__ import annotations

import fakeredis
import pytest

from worker.store.inventory import Conversational, Inventory, is_managed, managed_metadata

THREAD = Conversational.THREAD


@pytest.fixture
def inventory() -> Inventory:
    return Inventory(fakeredis.FakeRedis())


def test_created_threads_are_recorded_with_their_activity_and_listed_oldest_first(
    inventory: Inventory,
) -> None:
    # Given three threads created at different times
    inventory.record_created({"thread_id": "thread_a"}, at=100.0)
    inventory.record_created({"thread_id": "thread_b"}, at=50.0)
    inventory.record_created({"thread_id": "thread_c"}, at=500.0)
    # When asking which are idle since before 200
    idle = inventory.idle(THREAD, before=200.0)
    # Then the two older ones, oldest first
    assert idle == [("thread_b", 50.0), ("thread_a", 100.0)]
    assert inventory.borrowed(["thread_a", "thread_b", "thread_c"]) == set()


def test_touch_moves_activity_but_never_brings_back_a_forgotten_thread(inventory: Inventory) -> None:
    inventory.record_created({"thread_id": "thread_a"}, at=100.0)
    inventory.touch({"thread_id": "thread_a", "run_id": "run_1"}, at=900.0)
    assert inventory.last_active(THREAD, "thread_a") == 900.0
    # A job ending after the clean-up deleted its thread must not record it again.
    inventory.forget(THREAD, "thread_a")
    inventory.touch({"thread_id": "thread_a"}, at=950.0)
    assert inventory.last_active(THREAD, "thread_a") is None


def test_a_thread_first_seen_from_a_producer_is_borrowed_but_one_created_here_stays_ours(
    inventory: Inventory,
) -> None:
    inventory.record_used({"thread_id": "thread_given", "conversation_id": None}, at=10.0)
    inventory.record_created({"thread_id": "thread_ours"}, at=10.0)
    inventory.record_used({"thread_id": "thread_ours"}, at=20.0)
    assert inventory.borrowed(["thread_given", "thread_ours"]) == {"thread_given"}
    assert inventory.last_active(THREAD, "thread_ours") == 20.0


def test_conversations_have_their_own_set(inventory: Inventory) -> None:
    inventory.record_created({"conversation_id": "conv_1"}, at=1.0)
    assert inventory.idle(THREAD, before=10.0) == []
    assert inventory.idle(Conversational.CONVERSATION, before=10.0) == [("conv_1", 1.0)]


def test_stores_and_files_are_recorded_and_forgotten(inventory: Inventory) -> None:
    inventory.record_store("vs_1")
    inventory.record_files(["file-1", "file-2"])
    inventory.forget_file("file-1")
    assert inventory.stores() == {"vs_1"}
    assert inventory.files() == {"file-2"}
    assert is_managed(managed_metadata())
    assert not is_managed({"managed_by": "someone-else"})
    assert not is_managed(None)
