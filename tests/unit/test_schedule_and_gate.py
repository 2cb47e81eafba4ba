"""The poll schedule's leases and the shared Retry-After gate, against a real redis-server."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest
import redis
import redis.asyncio as aioredis
from helpers import wait_for

from worker.errors import RateGateClosed
from worker.polls import RunPoll, TaskDue
from worker.rate_gate import RateGate
from worker.store.gates import Gates
from worker.store.schedule import AsyncSchedule, Schedule

POLL = RunPoll(path="/responses/resp_1")


def test_a_claim_hides_an_entry_until_its_lease_ends_then_another_poller_gets_it(
    redis_client: redis.Redis, redis_url: str
) -> None:
    async def scenario() -> None:
        Schedule(redis_client).put("job_1", POLL, 0.0)
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
        first, second = AsyncSchedule(clients[0]), AsyncSchedule(clients[1])
        held = await first.claim(10, lease_s=0.3)
        assert [c.job_id for c in held] == ["job_1"] and held[0].entry == POLL
        assert await second.claim(10, lease_s=0.3) == []  # held: invisible to the other poller
        await asyncio.sleep(0.4)  # the holder died: its lease runs out
        taken = await second.claim(10, lease_s=5)
        assert [c.job_id for c in taken] == ["job_1"]
        # The dead holder's late write changes nothing; the new holder's does.
        await first.settle([(held[0], 60.0, None)], [])
        assert await second.claim(10, lease_s=5) == []
        await second.settle([], [(taken[0], "task-1")])  # handed to a message: parked, never due
        schedule = Schedule(redis_client)
        assert schedule.size() == 1 and schedule.due() == 0
        assert await second.claim(10, lease_s=5) == []
        for client in clients:
            await client.aclose()

    asyncio.run(scenario())


def test_a_reschedule_by_a_task_wins_over_the_poller_s_park(
    redis_client: redis.Redis, redis_url: str
) -> None:
    async def scenario() -> None:
        schedule = Schedule(redis_client)
        schedule.put("job_1", POLL, 0.0)
        client = aioredis.Redis.from_url(redis_url)
        poller = AsyncSchedule(client)
        [claim] = await poller.claim(1, lease_s=5)
        resumed = RunPoll(path="/responses/resp_1", polls=3)
        schedule.put("job_1", resumed, 30.0)  # the finish task resumed polling before the park landed
        await poller.settle([], [(claim, "task-1")])  # the poller's park of its hand-off comes late
        assert schedule.entry("job_1") == resumed
        assert schedule.clear_sent(["job_1"], "task-1") == 0  # and that task's message no longer owns it
        await client.aclose()

    asyncio.run(scenario())


def test_one_settle_writes_each_claim_it_still_holds_and_skips_the_ones_it_lost(
    redis_client: redis.Redis, redis_url: str
) -> None:
    async def scenario() -> None:
        schedule = Schedule(redis_client)
        for job in ("job_1", "job_2", "job_3", "job_4"):
            schedule.put(job, POLL, 0.0)
        client = aioredis.Redis.from_url(redis_url)
        poller = AsyncSchedule(client)
        claims = {c.job_id: c for c in await poller.claim(10, lease_s=5)}
        # Tasks take job_2 and job_4 back before the poller's outcomes are written.
        by_task, by_poller = RunPoll(path="/r", polls=7), RunPoll(path="/r", polls=1)
        schedule.put("job_2", by_task, 30.0)
        schedule.put("job_4", by_task, 30.0)
        await poller.settle(
            [(claims["job_1"], 60.0, by_poller), (claims["job_2"], 60.0, by_poller)],
            [(claims["job_3"], "task-3"), (claims["job_4"], "task-4")],
        )
        assert schedule.entry("job_1") == by_poller
        assert schedule.entry("job_2") == by_task
        assert schedule.entry("job_3") == POLL and schedule.due() == 0  # parked as it was
        assert schedule.entry("job_4") == by_task
        assert schedule.clear_sent(["job_3", "job_4"], "task-3") == 1
        assert schedule.clear_sent(["job_4"], "task-4") == 0
        assert schedule.size() == 3
        await client.aclose()

    asyncio.run(scenario())


def _exchange(method: str, url: str, status: int, retry_after_ms: str | None) -> httpx2.Response:
    headers = {"retry-after-ms": retry_after_ms} if retry_after_ms else {}
    return httpx2.Response(status, headers=headers, request=httpx2.Request(method, url))


def test_a_429_closes_its_endpoint_for_every_worker_at_once_until_the_wait_passes(
    redis_client: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two workers' gates (each on its own connection) that both saw the endpoint open
    other_client = redis.Redis.from_url(redis_url)
    here, elsewhere = RateGate(Gates(redis_client)), RateGate(Gates(other_client))
    create = httpx2.Request("POST", "http://api/v1/responses")
    other = httpx2.Request("GET", "http://api/v1/responses/resp_1")
    here.check(create)
    elsewhere.check(create)
    # When one of them is told to wait 30 s
    here.record(_exchange("POST", "http://api/v1/responses", 429, "30000"))
    # Then the endpoint is closed where the 429 arrived, and on the other as soon as the announcement
    # reaches its connection: its next check reads it there, with no cache period to run out first
    with pytest.raises(RateGateClosed):
        here.check(create)
    caught = wait_for(lambda: closed(elsewhere, create), 10, "the other worker to see the close")
    assert 0 < caught.wait <= 30.001  # the announcement carries the end in whole milliseconds, rounded
    elsewhere.check(other)  # another endpoint stays open
    # And a worker that starts later learns of it too
    assert closed(RateGate(Gates(other_client)), create)
    # ...until the wait has passed, when both call it again
    later = time.time() + 31
    monkeypatch.setattr(time, "time", lambda: later)
    here.check(create)
    elsewhere.check(create)
    other_client.close()


def closed(gate: RateGate, request: httpx2.Request) -> RateGateClosed | None:
    """The refusal ``gate`` gives ``request`` now, or None when it lets it through."""
    try:
        gate.check(request)
    except RateGateClosed as exc:
        return exc
    return None


def test_a_success_or_a_429_without_a_wait_closes_nothing(redis_client: redis.Redis) -> None:
    gate = RateGate(Gates(redis_client))
    request = httpx2.Request("POST", "http://api/v1/threads")
    gate.record(_exchange("POST", "http://api/v1/threads", 200, None))
    gate.record(_exchange("POST", "http://api/v1/threads", 429, None))
    gate.check(request)


def test_an_entry_that_does_not_decode_is_dropped_not_claimed_for_ever(
    redis_client: redis.Redis, redis_url: str
) -> None:
    async def scenario() -> None:
        schedule = Schedule(redis_client)
        schedule.put("job_good", TaskDue("aj.run.start", [["job_good"]]), 0.0)
        schedule.put("job_bad", POLL, 0.0)
        redis_client.hset("aj:pollmeta", "job_bad", "not json {")
        client = aioredis.Redis.from_url(redis_url)
        claims = await AsyncSchedule(client).claim(10, lease_s=5)
        assert [c.job_id for c in claims] == ["job_good"]
        assert schedule.entry("job_bad") is None and schedule.size() == 1
        await client.aclose()

    asyncio.run(scenario())
