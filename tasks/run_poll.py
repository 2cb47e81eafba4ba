"""The hot path: one poll of a run or response, in the worker's poll loop.

It reads only ``status`` and hands the few fields the flow needs to a finish task when the run
stopped being active. No pydantic, no SDK: at thousands of polls a
second the HTTP client and the parse decide how many runs one machine supervises.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import aiohttp
import orjson

from tasks.backends import ACTIVE
from tasks.poll_outcomes import failed, http_error, past_deadline, poll_after
from tasks.run_flow import task_name
from worker import constants as c
from worker.backoff import compute_delay
from worker.poller import Again, Handoff, Outcome, PollContext
from worker.polls import RunPoll
from worker.store.schedule import Claim

HANDOFF_FIELDS = (
    "status",
    "required_action",
    "usage",
    "last_error",
    "error",
    "incomplete_details",
    "expires_at",
    "completed_at",
    "output",
)
"""The fields of a run or response the finish step reads; the rest (instructions, tools) stays behind."""

FINISH = task_name(c.TASK_FINISH)
FINISH_MANY = task_name(c.TASK_FINISH_MANY)
CANCEL = task_name(c.TASK_CANCEL)
REQUEUE = task_name(c.TASK_REQUEUE)

WAITING_POLL_MIN_S = 5.0
"""Shortest gap between polls of a run that waits for tool outputs (nothing changes until they come)."""


async def poll_run(ctx: PollContext, claim: Claim) -> Outcome:
    """Retrieve the run (or response) and decide: poll again later, or hand it to the flow."""
    entry = claim.entry
    assert isinstance(entry, RunPoll)
    late = past_deadline(claim.job_id, entry, cancel=CANCEL, finish=FINISH)
    if late is not None:
        return late
    try:
        reply = await ctx.http.get(ctx.base + entry.path)
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = {"code": "connection_error", "message": f"could not reach the API: {exc!r}"}
        return failed(ctx, claim.job_id, entry, error, retryable=True, finish=FINISH)
    if reply.status != 200:
        return http_error(ctx, claim.job_id, entry, reply.status, reply.body, reply.headers, finish=FINISH)
    body: dict[str, Any] = orjson.loads(reply.body)
    status = body.get("status")
    if status == "queued" and entry.path.startswith("/responses/") and _stuck_queued(ctx, body):
        return Handoff(REQUEUE, [claim.job_id, body.get("id")])
    if status in ACTIVE or (status == "requires_action" and entry.waiting):
        polls = entry.polls + 1
        delay = compute_delay(polls, ctx.policy, poll_after=poll_after(reply.headers))
        if entry.safety:  # webhooks tell the end: this poll is only the safety net
            delay = max(delay, ctx.settings.webhook_safety_poll * (1 - ctx.policy.jitter * random.random()))
        if status == "requires_action":
            delay = max(delay, WAITING_POLL_MIN_S)
        return Again(delay, dataclasses.replace(entry, polls=polls, errors=0, woken=False))
    handed = {k: body[k] for k in HANDOFF_FIELDS if k in body}
    handed["learnt_by"] = "webhook" if entry.woken else "poll"
    return Handoff(FINISH_MANY, [claim.job_id, handed], batch=True)


def _stuck_queued(ctx: PollContext, body: dict[str, Any]) -> bool:
    """A background response still ``queued`` long after its creation: it may never start (reported on the
    live API), so the flow cancels it and creates it again."""
    created = body.get("created_at")
    return isinstance(created, int | float) and time.time() - created > ctx.settings.queued_stuck_after
