"""The poll schedule split per job kind: a poll loop claims only the kinds it serves, several kinds in due
order, and every operation that knows only a job id finds the job's entry in its kind's set."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import redis
import redis.asyncio as aioredis

from schemas.job import JobKind
from worker.polls import BatchPoll, RunPoll, TaskDue, encode, kind_of
from worker.store import keys
from worker.store.schedule import AsyncSchedule, Claim, Schedule, now_ms, poll_key

RUN = RunPoll(path="/responses/resp_1")
BATCH = BatchPoll(vector_store_id="vs_1", open=["vsfb_1"])
CLEANUP_START = TaskDue("aj.cleanup.start", [["job_c"]])


def claim(redis_url: str, kinds: Sequence[JobKind] = tuple(JobKind), name: str = "") -> list[Claim]:
    """What one claim by a poll loop of ``kinds`` takes."""

    async def scenario() -> list[Claim]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await AsyncSchedule(client, kinds, name).claim(100, lease_s=5)
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_each_entry_goes_to_its_job_kind_s_set() -> None:
    # Given an entry of each type; Then its kind is the job's: runs poll runs, indexing jobs batches, tasks
    # are their name's kind
    assert kind_of(RUN) == JobKind.RUN
    assert kind_of(BATCH) == JobKind.INDEX
    assert kind_of(TaskDue("aj.run.finish_many", [])) == JobKind.RUN
    assert kind_of(CLEANUP_START) == JobKind.CLEANUP


def test_a_poll_loop_claims_only_the_kinds_it_serves(redis_client: redis.Redis, redis_url: str) -> None:
    # Given a due run poll, a due batch poll and a due clean-up start
    schedule = Schedule(redis_client)
    schedule.put("job_r", RUN, 0.0)
    schedule.put("job_i", BATCH, 0.0)
    schedule.put("job_c", CLEANUP_START, 0.0)
    # When the poll loop of an indexing worker claims; Then it takes the indexing and clean-up entries only
    taken = {c.job_id for c in claim(redis_url, [JobKind.INDEX, JobKind.CLEANUP])}
    assert taken == {"job_i", "job_c"}
    # and the run poll is left to a run worker's loop
    assert [c.job_id for c in claim(redis_url, [JobKind.RUN])] == ["job_r"]


def test_a_loop_of_several_kinds_takes_what_fell_due_first_across_them(
    redis_client: redis.Redis, redis_url: str
) -> None:
    # Given entries of two kinds, interleaved in due time, more than one claim takes
    schedule = Schedule(redis_client)
    for i in range(6):
        entry = RUN if i % 2 == 0 else BATCH
        schedule.put(f"job_{i}", entry, -10.0 + i)

    # When a loop of both kinds claims three
    async def three() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return [c.job_id for c in await AsyncSchedule(client).claim(3, lease_s=5)]
        finally:
            await client.aclose()

    # Then it gets the three most overdue, whatever their kinds
    assert asyncio.run(three()) == ["job_0", "job_1", "job_2"]


def test_settles_parks_clears_and_redrives_find_the_entry_in_its_kind_s_set(
    redis_client: redis.Redis, redis_url: str
) -> None:
    schedule = Schedule(redis_client)
    # Given an indexing job's batch poll claimed by a loop
    schedule.put("job_i", BATCH, 0.0)
    [held] = claim(redis_url, [JobKind.INDEX])

    # When the loop hands it to a message (park), the task clears it, and the watchdog re-drives it
    async def park() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await AsyncSchedule(client, [JobKind.INDEX]).settle([], [(held, "task-1")])
        finally:
            await client.aclose()

    asyncio.run(park())
    # Then the entry stayed in the index set, parked on the message
    assert redis_client.zscore(poll_key(JobKind.INDEX), "job_i") > now_ms() + 10**14
    assert schedule.parked_before(now_ms() + 1000)[0][::2] == ("job_i", "task-1")
    assert schedule.clear_sent(["job_i"], "task-1") == 1 and schedule.scheduled(["job_i"]) == [False]
    assert schedule.redrive("job_i", TaskDue("aj.index.redrive", ["job_i"]), waited_on=None)
    assert redis_client.zscore(poll_key(JobKind.INDEX), "job_i") is not None
    assert all(redis_client.zcard(poll_key(k)) == 0 for k in (JobKind.RUN, JobKind.CLEANUP))
    # and a job with an entry is not re-driven as if it had none
    assert not schedule.redrive("job_i", TaskDue("aj.index.redrive", ["job_i"]), waited_on=None)


def test_claims_are_counted_per_poll_loop(redis_client: redis.Redis, redis_url: str) -> None:
    # Given five due entries; When two named loops claim; Then each one's count is what it took
    schedule = Schedule(redis_client)
    for i in range(5):
        schedule.put(f"job_{i}", RUN, 0.0)
    first = len(claim(redis_url, name="w1@host"))
    schedule.put("job_5", RUN, 0.0)
    second = len(claim(redis_url, name="w2@host"))
    assert schedule.claims() == {"w1@host": first, "w2@host": second} == {"w1@host": 5, "w2@host": 1}
    assert 0 < redis_client.ttl(keys.POLL_CLAIMS) <= 86_400


def test_entries_left_in_the_one_set_of_an_earlier_release_move_to_their_kinds(
    redis_client: redis.Redis, redis_url: str
) -> None:
    # Given the schedule as an earlier release wrote it: every kind in aj:polls, one entry unreadable
    due = now_ms() - 1000
    for job_id, entry in (("job_r", RUN), ("job_i", BATCH), ("job_c", CLEANUP_START)):
        redis_client.zadd(keys.LEGACY_POLLS, {job_id: due})
        redis_client.hset(keys.POLL_ENTRIES, job_id, encode(entry))
    redis_client.zadd(keys.LEGACY_POLLS, {"job_bad": due})
    redis_client.hset(keys.POLL_ENTRIES, "job_bad", orjson.dumps({"op": "nonsense"}))
    # When a poll loop starts and migrates
    assert Schedule(redis_client).migrate() == 3
    # Then the old set is gone and each entry is due in its kind's set, with its score
    assert not redis_client.exists(keys.LEGACY_POLLS)
    assert redis_client.zscore(poll_key(JobKind.INDEX), "job_i") == due
    assert {c.job_id for c in claim(redis_url)} == {"job_r", "job_i", "job_c"}
