"""The poll loop's keeper forks the loop's process while the worker is built and lets it run only at start:
a worker that never starts leaves no loop behind, and one that starts runs its loop in that very process.

A worker's main process is one thread when it prepares the keeper; this test process is not (xdist runs
threads of its own), so the tests say it is: the child they fork only waits, writes a file and sleeps."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.poll_process import Keeper, Parent


def loop(parent: Parent, marker: str) -> None:
    """A poll loop that says where it ran, says it runs, and runs until it is stopped."""
    Path(marker).write_text(str(os.getpid()))
    parent.running.set()
    while True:
        time.sleep(0.05)


@pytest.fixture
def keeper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Keeper]:
    """A keeper of `loop`, in a process taken for one thread; stopped at the end."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    made = Keeper(loop, str(tmp_path / "ran"))
    yield made
    made.stop(timeout=5)


def test_a_worker_that_never_starts_stops_its_prepared_loop_before_it_ran(
    keeper: Keeper, tmp_path: Path
) -> None:
    # Given a keeper that forked the loop's process while the worker was built
    keeper.prepare()
    assert keeper.process is not None and keeper.process.is_alive()
    # When the worker stops without having started (a later step refused it)
    keeper.stop(timeout=5)
    # Then that process never ran the loop, and is gone
    assert not (tmp_path / "ran").exists()
    assert not keeper.process.is_alive()


def test_a_started_worker_runs_its_loop_in_the_process_forked_while_it_was_built(
    keeper: Keeper, tmp_path: Path
) -> None:
    # Given a keeper that forked the loop's process while the worker was built
    keeper.prepare()
    assert keeper.process is not None
    prepared = keeper.process.pid
    # When the worker starts
    keeper.start()
    # Then the loop runs in that very process (no second one was spawned), and stops with the worker
    assert (tmp_path / "ran").read_text() == str(prepared)
    keeper.stop(timeout=5)
    assert not keeper.process.is_alive()
