"""The poll loop's batching (worker.poller.PollSession), one tick at a time with fake handlers: the
hand-overs of a tick joined into few messages, every outcome written in one settle, failures contained."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from worker.backoff import PollPolicy
from worker.poller import HANDOFF_BATCH, Again, Handler, Handoff, Outcome, PollContext, Poller, PollSession
from worker.polls import BatchPoll, Entry, RunPoll, TaskDue
from worker.settings import Settings
from worker.store.schedule import Claim

FINISH_MANY = "aj.run.finish_many"
NO_JITTER = PollPolicy(first=1.0, factor=2.0, cap=8.0, jitter=0.0)
Settle = tuple[list[tuple[Claim, float, Entry | None]], list[tuple[Claim, str]]]


class FakeSchedule:
    """Hands out the claims it was given, then records each settle that writes something."""

    def __init__(self, claims: Sequence[Claim]):
        self.waiting = list(claims)
        self.settles: list[Settle] = []

    async def claim(self, limit: int, lease_s: float) -> list[Claim]:
        taken, self.waiting = self.waiting[:limit], self.waiting[limit:]
        return taken

    async def settle(self, reschedules: Sequence[Any], parks: Sequence[Any]) -> None:
        if reschedules or parks:
            self.settles.append((list(reschedules), list(parks)))


class Broker:
    """Records what the loop sends; ``fail=True`` refuses every send."""

    def __init__(self, fail: bool = False):
        self.sent: list[tuple[str, list[Any], str]] = []
        self.fail = fail

    def send(self, name: str, args: list[Any], task_id: str) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((name, args, task_id))


def claims(count: int, entry: Entry | None = None) -> list[Claim]:
    return [
        Claim(f"job_{i:02d}", entry or RunPoll(path=f"/responses/resp_{i}"), token=i) for i in range(count)
    ]


def tick(
    found: Sequence[Claim], handler: Handler, broker: Broker | None = None
) -> tuple[int, FakeSchedule, Broker]:
    """One tick over ``found`` with ``handler`` for run polls; what it handled, the schedule, the broker."""
    broker = broker or Broker()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    poller = Poller(settings, broker.send, handlers={RunPoll: handler})
    schedule = FakeSchedule(found)
    ctx = PollContext(http=None, base="", policy=NO_JITTER, settings=settings)  # type: ignore[arg-type]
    session = PollSession(poller, ctx, schedule)  # type: ignore[arg-type]
    handled = asyncio.run(session.tick())
    return handled, schedule, broker


async def ended(ctx: PollContext, claim: Claim) -> Outcome:
    return Handoff(FINISH_MANY, [claim.job_id, {"status": "completed"}], batch=True)


def test_the_hand_overs_of_one_tick_go_in_messages_of_at_most_a_batch_each() -> None:
    # Given 45 runs that ended in the same tick
    found = claims(45)
    # When the tick handles them
    handled, schedule, broker = tick(found, ended)
    # Then 3 finish_many messages carry them (20 + 20 + 5), each job exactly once
    assert handled == 45
    assert [name for name, _, _ in broker.sent] == [FINISH_MANY] * 3
    batches = [args[0] for _, args, _ in broker.sent]
    assert [len(b) for b in batches] == [HANDOFF_BATCH, HANDOFF_BATCH, 5]
    assert sorted(job for batch in batches for job, _ in batch) == [c.job_id for c in found]
    assert all(body == {"status": "completed"} for batch in batches for _, body in batch)
    # And one settle parks every claim under the task id of the message that carries it
    [(reschedules, parks)] = schedule.settles
    assert reschedules == []
    carrier = {job: task_id for _, args, task_id in broker.sent for job, _ in args[0]}
    assert sorted((c.job_id, task_id) for c, task_id in parks) == sorted(carrier.items())


def test_the_reschedules_of_one_tick_are_written_in_one_settle_and_nothing_is_sent() -> None:
    async def active(ctx: PollContext, claim: Claim) -> Outcome:
        return Again(claim.token + 0.5, RunPoll(path="/r", polls=1))

    handled, schedule, broker = tick(claims(30), active)
    assert handled == 30 and broker.sent == []
    [(reschedules, parks)] = schedule.settles
    assert parks == []
    assert sorted((c.job_id, delay, entry) for c, delay, entry in reschedules) == [
        (f"job_{i:02d}", i + 0.5, RunPoll(path="/r", polls=1)) for i in range(30)
    ]


def test_a_tick_of_mixed_outcomes_sends_each_kind_its_way_and_settles_once() -> None:
    async def mixed(ctx: PollContext, claim: Claim) -> Outcome:
        if claim.token % 3 == 0:
            return Again(2.0)
        if claim.token % 3 == 1:
            return Handoff("aj.run.cancel", [claim.job_id, "deadline"])  # not batched: a message of its own
        return await ended(ctx, claim)

    handled, schedule, broker = tick(claims(9), mixed)
    assert handled == 9
    names = sorted(name for name, _, _ in broker.sent)
    assert names == ["aj.run.cancel"] * 3 + [FINISH_MANY]
    assert sorted(args[0] for name, args, _ in broker.sent if name == "aj.run.cancel") == [
        "job_01",
        "job_04",
        "job_07",
    ]
    [(reschedules, parks)] = schedule.settles
    assert sorted(c.job_id for c, _, _ in reschedules) == ["job_00", "job_03", "job_06"]
    assert len(parks) == 6


def test_a_due_task_entry_sends_its_task_and_is_parked() -> None:
    due = TaskDue("aj.run.start", [["job_00"]])
    handled, schedule, broker = tick(claims(1, due), ended)
    assert handled == 1
    [(name, args, task_id)] = broker.sent
    assert (name, args) == ("aj.run.start", [["job_00"]])
    assert [(c.job_id, t) for c, t in schedule.settles[0][1]] == [("job_00", task_id)]


@pytest.mark.parametrize(
    ("entry", "after"),
    [
        (RunPoll(path="/r", errors=2), RunPoll(path="/r", errors=3)),
        # No handler for batch polls in this loop: the same backoff, never a lost entry
        (
            BatchPoll(vector_store_id="vs_1", open=["b_1"]),
            BatchPoll(vector_store_id="vs_1", open=["b_1"], errors=1),
        ),
    ],
)
def test_a_poll_that_raises_is_polled_again_after_an_error_backoff_counting_it(
    entry: Entry, after: Entry
) -> None:
    async def broken(ctx: PollContext, claim: Claim) -> Outcome:
        raise RuntimeError("bug")

    handled, schedule, broker = tick(claims(1, entry), broken)
    assert handled == 1 and broker.sent == []
    [(reschedules, parks)] = schedule.settles
    errors = after.errors  # type: ignore[union-attr]
    assert [(c.job_id, delay, e) for c, delay, e in reschedules] == [("job_00", 2.0 ** (errors - 1), after)]
    assert parks == []


def test_a_send_that_fails_leaves_its_jobs_due_again_in_a_second_not_parked() -> None:
    handled, schedule, _ = tick(claims(3), ended, Broker(fail=True))
    assert handled == 3
    [(reschedules, parks)] = schedule.settles
    assert sorted((c.job_id, delay, e) for c, delay, e in reschedules) == [
        (f"job_0{i}", 1.0, None) for i in range(3)
    ]
    assert parks == []
