"""The asyncio producer (`worker.aclient.AsyncJobs`) from asyncio code, against the real Redis, the in-process
harness and the emulator: the same surface as `Jobs`, and a loop that never stops while it submits, waits,
sends a start or follows events.

The harness is synchronous: it runs in a thread (`asyncio.to_thread`) while the test's loop awaits the
client, as a producer's loop would while workers run elsewhere. A `LoopWatch` ticking every 10 ms records
the longest the loop went without running it: a call that blocked the loop (a synchronous Redis wait, a
kombu publish on the loop) shows as a stall as long as that call. Stalls are judged while only the client
works (the harness's thread, once it runs, competes for the GIL).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from harness import Harness
from helpers import Ask

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from schemas.results import RunResult
from worker.aclient import AsyncJobs
from worker.client import JobTimeout, ToolOutputsRejected
from worker.polls import TaskDue

T = TypeVar("T")

BLOCK_S = 2.0
"""How long the calls below would hold a loop that they blocked."""
STALL_LIMIT_S = 1.0
"""The longest stall allowed: under half of `BLOCK_S`, far above a loaded machine's scheduling jitter."""

# What these tests show is the client's, not a backend's: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["responses"])


class LoopWatch:
    """The longest the running loop went without running a 10 ms timer."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - start - 0.01)


def watched(scenario: Callable[[LoopWatch], Awaitable[T]]) -> tuple[T, float]:
    """Run ``scenario`` on a fresh loop with a `LoopWatch`; its result and the worst stall."""
    watch = LoopWatch()

    async def main() -> T:
        ticker = asyncio.create_task(watch.run())
        try:
            return await scenario(watch)
        finally:
            ticker.cancel()

    return asyncio.run(main()), watch.worst


class SlowBroker:
    """A stand-in Celery app whose publish takes `BLOCK_S` (a broker far away or half down); it records what
    it sent and from which thread."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], str]] = []
        self.threads: set[str] = set()

    def send_task(self, name: str, args: list[Any], task_id: str, **_: Any) -> None:
        time.sleep(BLOCK_S)
        self.threads.add(threading.current_thread().name)
        self.sent.append((name, args, task_id))

    def close(self) -> None:
        pass


def test_an_asyncio_producer_submits_waits_and_reads_a_typed_result_without_stalling_its_loop(
    harness: Harness, ask: Ask
) -> None:
    # Given an asyncio producer on the test's Redis and broker
    async def scenario(watch: LoopWatch) -> tuple[Any, ...]:
        async with AsyncJobs(harness.settings, celery=harness.app) as jobs:
            ref = await jobs.submit(ask("What is the capital of France?"))
            # When it waits for a job nobody runs yet: the record comes back as it is, or JobTimeout
            still = await jobs.wait(ref.id, timeout=BLOCK_S)
            with pytest.raises(JobTimeout) as timed_out:
                await jobs.wait(ref.id, timeout=0.1, raise_on_timeout=True)
            stalled_while_waiting = watch.worst
            # ...and then while the workers run it
            ending = asyncio.create_task(jobs.wait(ref.id, timeout=120))
            await asyncio.to_thread(harness.run, ref.id)
            record = await ending
            events = [e.type async for e in jobs.events() if e.job_id == ref.id]
            listed = [r.id for r in await jobs.list(JobStatus.COMPLETED)]
            return ref, still, timed_out.value, stalled_while_waiting, record, events, listed

    # (the stall is judged while nothing else runs: the harness's thread, once started, competes for the GIL)
    (ref, still, timed_out, stalled_while_waiting, record, events, listed), _ = watched(scenario)

    # Then the waits gave the live record back and its loop ran on all along
    assert still.status == JobStatus.QUEUED
    assert timed_out.record.id == ref.id and "still queued" in str(timed_out)
    assert stalled_while_waiting < STALL_LIMIT_S, f"the loop stalled {stalled_while_waiting:.2f} s in a wait"
    # ...and the job completed, with its typed result, its events and its place in the listing
    assert record.status == JobStatus.COMPLETED, record.error
    result = record.run_result()
    assert isinstance(result, RunResult) and "capital of France" in result.text
    assert result.usage is not None and result.usage.total_tokens > 0 and result.tool_rounds == 0
    assert record.result is not None and "tool_rounds" not in record.result  # the stored JSON is as written
    assert events == ["job.queued", "job.started", "job.completed"]
    assert listed == [ref.id]


def test_an_asyncio_producer_sends_its_starts_from_a_thread_so_a_slow_broker_never_stalls_its_loop(
    harness: Harness, ask: Ask
) -> None:
    # Given an asyncio producer whose broker takes two seconds to accept a message
    broker = SlowBroker()

    async def scenario(watch: LoopWatch) -> list[str]:
        async with AsyncJobs(harness.settings, celery=broker) as jobs:  # type: ignore[arg-type]
            # When it submits three jobs at once
            refs = await asyncio.gather(*(jobs.submit(ask(f"question {i}")) for i in range(3)))
            return [ref.id for ref in refs]

    job_ids, worst = watched(scenario)

    # Then every start was published, from the client's sending thread, and the loop never stalled
    assert sorted(args[0][0] for _, args, _ in broker.sent) == sorted(job_ids)
    assert broker.threads and all(name.startswith("aj-publish") for name in broker.threads)
    assert worst < STALL_LIMIT_S, f"the loop stalled {worst:.2f} s while the broker was slow"
    # ...and each start was parked as sent, so no worker sends it a second time
    assert harness.store.schedule.due() == 0


def test_relay_mode_leaves_the_start_to_the_workers_poll_loop_and_needs_no_broker(
    make_harness: Callable[..., Harness], ask: Ask
) -> None:
    # Given an asyncio producer in relay mode whose broker setting points nowhere
    harness = make_harness()
    nowhere = harness.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})

    async def submit() -> str:
        async with AsyncJobs(nowhere, relay=True) as jobs:
            return (await jobs.submit(ask("relay me"))).id

    job_id = asyncio.run(submit())

    # Then the job's start waits in the outbox, due at once, and nothing was published
    assert harness.store.schedule.entry(job_id) == TaskDue("aj.run.start", [[job_id]])
    assert harness.store.schedule.due() == 1
    assert harness.worker.drain() == 0
    # When the workers' poll loop passes, it sends the start, and the job runs to its end
    [record] = harness.run(job_id)
    assert record.status == JobStatus.COMPLETED, record.error


def test_an_asyncio_producer_answers_tool_calls_cancels_and_retries_dead_letters(
    make_harness: Callable[..., Harness], ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given an asyncio producer, workers allowed no retries, and a run that asks the producer for get_time
    harness = make_harness(AJ_MAX_RETRIES="0")

    async def scenario(watch: LoopWatch) -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with AsyncJobs(harness.settings, celery=harness.app) as jobs:
            ref = await jobs.submit(ask("use get_time", run_tools=False))
            waiting = await asyncio.to_thread(harness.run_until_status, ref.id, JobStatus.REQUIRES_ACTION)
            # When it answers with an unknown call id, then with the right one
            with pytest.raises(ToolOutputsRejected):
                await jobs.submit_tool_outputs(ref.id, [{"tool_call_id": "call_nope", "output": "x"}])
            call = waiting.tool_calls[0]
            await jobs.submit_tool_outputs(ref.id, [{"tool_call_id": call.id, "output": "noon"}])
            out["answered"] = (await asyncio.to_thread(harness.run, ref.id))[0]
            # ...cancels a job still queued
            queued = await jobs.submit(ask("never mind"))
            out["cancelled"] = await jobs.cancel(queued.id)
            # ...and retries a job dead-lettered while the API answered 503, once the API is back
            emulator.set_faults(rate_503=1.0, methods=["POST"])
            doomed = await jobs.submit(ask("doomed"))
            await asyncio.to_thread(harness.run, doomed.id, queued.id)
            out["dead"] = [r.id for r in await jobs.dead()]
            emulator.clear_faults()
            retried = await jobs.retry_dead(doomed.id)
            out["retried"] = (await asyncio.to_thread(harness.run, retried.id))[0]
            out["dead_after"] = await jobs.dead()
            out["doomed"] = doomed.id
        return out

    out, _ = watched(scenario)

    # Then the answered run completed after one tool round
    answered = out["answered"].run_result()
    assert out["answered"].status == JobStatus.COMPLETED, out["answered"].error
    assert "noon" in answered.text and answered.tool_rounds == 1
    # ...the queued job ended cancelled at once, and the dead letter ran again to completion as a new job
    assert out["cancelled"].status == JobStatus.CANCELLED
    assert out["dead"] == [out["doomed"]]
    assert out["retried"].status == JobStatus.COMPLETED and out["dead_after"] == []
