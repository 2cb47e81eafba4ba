"""The pollers: an asyncio loop (in a thread of the worker's main process) that claims due polls,
retrieves many remote objects at once, and reschedules each or hands it to a finish task.

No Celery message per poll and no task sleeping: a Celery message is sent only when a job has
something to do (its run ended, needs tool outputs, passed its deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tasks.backoff import PollPolicy, error_delay
from worker.openai_client import api_base, auth_headers
from worker.scheduler import AsyncSchedule, Claim
from worker.settings import Settings

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
    """Poll again in ``delay`` seconds, storing ``meta`` (None keeps the current one)."""

    delay: float
    meta: dict[str, Any] | None = None


@dataclass
class Handoff:
    """Send Celery task ``task`` with ``args`` and take the entry off the schedule."""

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

    http: aiohttp.ClientSession
    base: str
    policy: PollPolicy
    settings: Settings


Handler = Callable[[PollContext, Claim], Awaitable[Outcome]]
HANDLERS: dict[str, Handler] = {}
"""Poll handlers by the ``op`` of a schedule entry; job kinds register theirs on import."""


def poll_handler(op: str) -> Callable[[Handler], Handler]:
    """Register a poll handler for schedule entries whose meta has ``"op": op``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[op] = fn
        return fn

    return register


@poll_handler("task")
async def _send_when_due(ctx: PollContext, claim: Claim) -> Outcome:
    """A deferred task (a start waiting out a busy thread, a retry after backoff): send it now."""
    return Handoff(claim.meta["task"], claim.meta.get("args", []))


def policy_of(settings: Settings) -> PollPolicy:
    """The poll policy from the settings."""
    return PollPolicy(settings.poll_first, settings.poll_factor, settings.poll_cap, settings.poll_jitter)


class Poller:
    """Runs the poll loop in a daemon thread; ``send(task, args)`` dispatches a Celery task."""

    def __init__(self, settings: Settings, send: Callable[[str, list[Any]], None]):
        self.settings = settings
        self.send = send
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reschedules: list[tuple[Claim, float, dict[str, Any] | None]] = []
        self._releases: list[Claim] = []
        self._batched: dict[str, list[tuple[Claim, list[Any]]]] = {}
        self._batch_since = 0.0

    def start(self) -> None:
        """Start the loop in a background thread."""
        self._thread = threading.Thread(target=self._run, name="aj-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to stop and wait for it (claims it holds fall due again when their lease ends)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            import uvloop

            uvloop.run(self.main())
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            asyncio.run(self.main())

    async def main(self) -> None:
        """Claim, poll and settle until stopped."""
        s = self.settings
        client = aioredis.Redis.from_url(s.redis_url, socket_timeout=30, health_check_interval=15)
        schedule = AsyncSchedule(client)
        connector = aiohttp.TCPConnector(limit=s.poll_concurrency, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=s.openai_timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=auth_headers(s), raise_for_status=False
        ) as http:
            ctx = PollContext(http, api_base(s), policy_of(s), s)
            flusher = asyncio.create_task(self._flush_forever(schedule))
            try:
                await self._loop(ctx, schedule)
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                await self._flush(schedule, final=True)
                await client.aclose()

    async def _loop(self, ctx: PollContext, schedule: AsyncSchedule) -> None:
        inflight: set[asyncio.Task[None]] = set()
        limit = self.settings.poll_concurrency
        while not self._stop.is_set():
            free = limit - len(inflight)
            if free <= 0:
                await asyncio.wait(inflight, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
                continue
            want = min(free, CLAIM_BATCH)
            try:
                claims = await schedule.claim(want, self.settings.poll_lease)
            except Exception:
                log.exception("claiming polls failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if not claims:
                due_in = await schedule.next_due_in()
                await asyncio.sleep(IDLE_S if due_in is None else min(max(due_in, TICK_S), IDLE_S))
                continue
            for claim in claims:
                task = asyncio.create_task(self._handle(ctx, claim))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if len(claims) < want:  # all that was due is out: let more fall due than claim one at a time
                await asyncio.sleep(TICK_S)
        if inflight:
            await asyncio.wait(inflight, timeout=5.0)

    async def _handle(self, ctx: PollContext, claim: Claim) -> None:
        handler = HANDLERS.get(str(claim.meta.get("op")))
        try:
            if handler is None:
                raise LookupError(f"no poll handler for {claim.meta.get('op')!r}")
            outcome = await handler(ctx, claim)
        except Exception:
            log.exception("poll of job %s failed", claim.job_id)
            errors = int(claim.meta.get("poll_errors", 0)) + 1
            outcome = Again(error_delay(errors, ctx.policy), {**claim.meta, "poll_errors": errors})
        if isinstance(outcome, Again):
            self._reschedules.append((claim, outcome.delay, outcome.meta))
        elif outcome.batch:
            if not self._batched:
                self._batch_since = time.monotonic()
            self._batched.setdefault(outcome.task, []).append((claim, outcome.args))
        else:
            await self._dispatch(outcome.task, outcome.args, [claim])

    async def _dispatch(self, task: str, args: list[Any], claims: list[Claim]) -> None:
        """Send ``task``; its claims are released once it is sent, or polled again in a second if not."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.send, task, args)
        except Exception:
            log.exception("dispatch of %s for %d job(s) failed; will retry", task, len(claims))
            self._reschedules.extend((claim, 1.0, None) for claim in claims)
            return
        self._releases.extend(claims)

    async def _flush_forever(self, schedule: AsyncSchedule) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._flush(schedule)
            except Exception:
                log.exception("writing poll outcomes failed; leases will bring them back")

    async def _flush(self, schedule: AsyncSchedule, final: bool = False) -> None:
        await self._send_batches(final)
        reschedules, self._reschedules = self._reschedules, []
        releases, self._releases = self._releases, []
        await schedule.settle(reschedules, releases)

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
