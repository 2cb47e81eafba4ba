"""The poll loop: an asyncio loop (in a process of its own beside the worker's, `worker.poll_process`, or
in a thread of the worker's main process) that claims due schedule entries, retrieves many remote objects
at once, and reschedules each or hands its job to a Celery task.

No Celery message per poll and no task sleeping: a message is sent only when a job has something to do
(its run ended, needs tool outputs, passed its deadline, or a deferred step fell due). A job handed to a
message stays on the schedule, *parked* with the message's task id, until the task gives it its next
entry; so a message in flight is always visible, and the watchdog (run from this loop) can tell a job that
waits its turn from one that stopped moving.

What to do with an entry is the business of the job kinds: the composition root (`worker.app`) hands
the loop a handler per entry type (`Poller(handlers={RunPoll: ..., BatchPoll: ...})`). `TaskDue` entries
are the loop's own: it sends the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.async_api import HotHttp
from worker.backoff import PollPolicy, error_delay, policy_of
from worker.connections import async_redis_client
from worker.metrics import ApiCounts, process_counts
from worker.openai_client import api_base
from worker.polls import BatchPoll, Entry, RunPoll, TaskDue
from worker.settings import Settings
from worker.store.schedule import AsyncSchedule, Claim

log = logging.getLogger(__name__)

TICK_S = 0.01
"""How often the loop claims what fell due and writes its poll outcomes: 10 ms batches the Redis work
(one script call for many entries) at a cost far below the poll interval."""
IDLE_S = 0.05
"""Longest sleep when nothing is due (a newly scheduled entry waits at most this long)."""
CLAIM_BATCH = 500
"""Most entries one claim takes."""
HANDOFF_BATCH = 20
"""Most batched hand-overs in one message: a pool process finishes them in well under a second."""
HANDOFF_WAIT_S = 0.05
"""Longest a batched hand-over waits for others to join it (a fortieth of the default 2 s poll cap)."""


@dataclass
class Again:
    """Act on the entry again in ``delay`` seconds, storing ``entry`` (None keeps the current one)."""

    delay: float
    entry: Entry | None = None


@dataclass
class Handoff:
    """Send Celery task ``task`` with ``args``; the job's entry stays, parked, until the task acts."""

    task: str
    args: list[Any] = field(default_factory=list)
    batch: bool = False
    """``task`` takes a list of such ``args``: the loop joins hand-overs made within `HANDOFF_WAIT_S`
    into one message (up to `HANDOFF_BATCH`), so a thousand runs ending costs tens of messages, not a
    thousand."""


Outcome = Again | Handoff


@dataclass
class PollContext:
    """What a poll handler may use: the hot-path HTTP session, the API base, the policy, settings."""

    http: HotHttp
    base: str
    policy: PollPolicy
    settings: Settings


Handler = Callable[[PollContext, Claim], Awaitable[Outcome]]
"""Decides what a due entry leads to."""
Send = Callable[[str, list[Any], str], None]
"""Dispatches Celery task ``name`` with ``args`` under task id ``task_id`` (blocking; run off the loop)."""


async def send_when_due(ctx: PollContext, claim: Claim) -> Outcome:
    """A `TaskDue` entry: send its task now."""
    entry = claim.entry
    assert isinstance(entry, TaskDue)
    return Handoff(entry.task, entry.args)


class Poller:
    """The poll loop. ``start()`` runs it in a daemon thread; ``session()`` and `PollSession.tick` drive it
    step by step (the in-process test harness does)."""

    def __init__(
        self,
        settings: Settings,
        send: Send,
        handlers: Mapping[type[Entry], Handler],
        *,
        periodic: Callable[[], object] | None = None,
        name: str = "",
        counts: ApiCounts | None = None,
    ):
        self.settings = settings
        self.name = name
        """The worker's node name, under which this loop's claims are counted (`Schedule.claims`)."""
        self.counts = counts
        """Where its requests are counted (this process's `ApiCounts` when None)."""
        self.send = send
        self.handlers: dict[type[Entry], Handler] = {TaskDue: send_when_due, **handlers}
        self.periodic = periodic
        """Blocking work run every `Settings.watchdog_every` seconds in an executor thread (the watchdog)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop in a background thread."""
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="aj-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to stop and wait for it (claims it holds fall due again when their lease ends)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def run(self, stop: threading.Event) -> None:
        """Claim, poll and settle in this thread, on an event loop of its own, until ``stop`` is set."""
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
            asyncio.run(self.main(stop))
        else:
            uvloop.run(self.main(stop))

    async def main(self, stop: threading.Event) -> None:
        """Claim, poll and settle until ``stop`` is set."""
        async with self.session() as session:
            await session.run(stop)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[PollSession]:
        """The loop's connections (Redis, the hot-path HTTP session) for as long as the block runs."""
        s = self.settings
        client = async_redis_client(s)
        # Every poll is counted in aj_api_requests_total, as the tasks' requests are.
        counts = self.counts or process_counts()
        try:
            async with HotHttp(s, counts, s.poll_concurrency, s.openai_timeout) as http:
                yield PollSession(
                    self,
                    PollContext(http, api_base(s), policy_of(s), s),
                    AsyncSchedule(client, s.poll_kinds, self.name),
                )
        finally:
            await client.aclose()


class PollSession:
    """One run of the loop on open connections."""

    def __init__(self, poller: Poller, ctx: PollContext, schedule: AsyncSchedule):
        self.poller = poller
        self.ctx = ctx
        self.schedule = schedule
        self._reschedules: list[tuple[Claim, float, Entry | None]] = []
        self._parks: list[tuple[Claim, str]] = []
        self._batched: dict[str, list[tuple[Claim, list[Any]]]] = {}
        self._batch_since = 0.0

    async def tick(self) -> int:
        """Claim what is due, handle all of it and write every outcome (batched hand-overs sent at once);
        the number of entries handled. Deterministic: nothing is left in flight when it returns."""
        claims = await self.schedule.claim(CLAIM_BATCH, self.ctx.settings.poll_lease)
        await asyncio.gather(*(self._handle(claim) for claim in claims))
        await self._flush(final=True)
        return len(claims)

    async def run(self, stop: threading.Event) -> None:
        """Claim, handle and settle until ``stop`` is set, with up to `Settings.poll_concurrency`
        polls in flight, outcomes written every `TICK_S`, and the periodic work every so often."""
        flusher = asyncio.create_task(self._flush_forever())
        periodic = asyncio.create_task(self._periodic_forever()) if self.poller.periodic else None
        try:
            await self._loop(stop)
        finally:
            for task in (flusher, periodic):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self._flush(final=True)

    async def _loop(self, stop: threading.Event) -> None:
        inflight: set[asyncio.Task[None]] = set()
        limit = self.ctx.settings.poll_concurrency
        while not stop.is_set():
            free = limit - len(inflight)
            if free <= 0:
                await asyncio.wait(inflight, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
                continue
            want = min(free, CLAIM_BATCH)
            try:
                claims = await self.schedule.claim(want, self.ctx.settings.poll_lease)
            except Exception:
                log.exception("claiming polls failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if not claims:
                try:
                    due_in = await self.schedule.next_due_in()
                except Exception:
                    due_in = None
                await asyncio.sleep(IDLE_S if due_in is None else min(max(due_in, TICK_S), IDLE_S))
                continue
            for claim in claims:
                task = asyncio.create_task(self._handle(claim))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if len(claims) < want:  # all that was due is out: let more fall due than claim one at a time
                await asyncio.sleep(TICK_S)
        if inflight:
            await asyncio.wait(inflight, timeout=5.0)

    async def _handle(self, claim: Claim) -> None:
        handler = self.poller.handlers.get(type(claim.entry))
        try:
            if handler is None:
                raise LookupError(f"no handler for {type(claim.entry).__name__} entries")
            outcome = await handler(self.ctx, claim)
        except Exception:
            log.exception("poll of job %s failed", claim.job_id)
            errors = (claim.entry.errors if isinstance(claim.entry, RunPoll | BatchPoll) else 0) + 1
            entry = _with_errors(claim.entry, errors)
            outcome = Again(error_delay(errors, self.ctx.policy), entry)
        if isinstance(outcome, Again):
            self._reschedules.append((claim, outcome.delay, outcome.entry))
        elif outcome.batch:
            if not self._batched:
                self._batch_since = time.monotonic()
            self._batched.setdefault(outcome.task, []).append((claim, outcome.args))
        else:
            await self._dispatch(outcome.task, outcome.args, [claim])

    async def _dispatch(self, task: str, args: list[Any], claims: list[Claim]) -> None:
        """Send ``task``; its claims are parked once it is sent, or tried again in a second if not."""
        task_id = str(uuid.uuid4())
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.poller.send, task, args, task_id)
        except Exception:
            log.exception("dispatch of %s for %d job(s) failed; will retry", task, len(claims))
            self._reschedules.extend((claim, 1.0, None) for claim in claims)
            return
        self._parks.extend((claim, task_id) for claim in claims)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._flush()
            except Exception:
                log.exception("writing poll outcomes failed; leases will bring them back")

    async def _flush(self, final: bool = False) -> None:
        await self._send_batches(final)
        reschedules, self._reschedules = self._reschedules, []
        parks, self._parks = self._parks, []
        await self.schedule.settle(reschedules, parks)

    async def _send_batches(self, final: bool) -> None:
        """Send the batched hand-overs once the oldest has waited `HANDOFF_WAIT_S` or a batch is full."""
        full = any(len(items) >= HANDOFF_BATCH for items in self._batched.values())
        if not (final or full or time.monotonic() - self._batch_since >= HANDOFF_WAIT_S):
            return
        batched, self._batched = self._batched, {}
        for task, items in batched.items():
            for i in range(0, len(items), HANDOFF_BATCH):
                chunk = items[i : i + HANDOFF_BATCH]
                await self._dispatch(task, [[args for _, args in chunk]], [claim for claim, _ in chunk])

    async def _periodic_forever(self) -> None:
        work = self.poller.periodic
        assert work is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ctx.settings.watchdog_every)
            try:
                await loop.run_in_executor(None, work)
            except Exception:
                log.exception("the watchdog pass failed; the next one will look again")


def _with_errors(entry: Entry, errors: int) -> Entry | None:
    """``entry`` with its error count moved on (entries that count errors), else None: keep it."""
    if isinstance(entry, RunPoll | BatchPoll):
        return dataclasses.replace(entry, errors=errors)
    return None
