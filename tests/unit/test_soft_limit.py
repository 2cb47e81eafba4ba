"""`soft_limit_held`: a task's soft time limit (billiard's SIGUSR1) waits for the end of a block that makes
and records, but never past half the time to the hard limit."""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tasks.steps import soft_limit_held


def limits(soft: float, hard: float) -> Any:
    """Settings with these time limits (all `soft_limit_held` reads)."""
    return SimpleNamespace(task_soft_time_limit=soft, task_time_limit=hard)


def test_a_soft_limit_inside_the_block_is_raised_once_the_block_is_done() -> None:
    done = []
    with pytest.raises(SoftTimeLimitExceeded), soft_limit_held(limits(6, 60)):
        os.kill(os.getpid(), signal.SIGUSR1)
        done.append("recorded")
    assert done == ["recorded"]


def test_a_block_still_running_when_the_grace_ends_is_interrupted_where_it_is() -> None:
    never = threading.Event()
    reached = []
    with pytest.raises(SoftTimeLimitExceeded), soft_limit_held(limits(6, 6.2)):  # a grace of 0.1 s
        os.kill(os.getpid(), signal.SIGUSR1)
        never.wait(60)
        reached.append("the end of the block")
    assert reached == []


def test_without_a_soft_limit_the_block_runs_and_the_handler_before_it_is_back() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with soft_limit_held(limits(6, 60)):
        pass
    assert signal.getsignal(signal.SIGUSR1) is before
