"""The hot path: one poll of a run or response, in the worker's poll loop.

It reads only ``status`` (and the pending call ids while waiting) and hands the few fields the
flow needs to a finish task when something changed. No pydantic, no SDK: at thousands of polls a
second the HTTP client and the parse decide how many runs one machine supervises.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from tasks.backends import ACTIVE
from tasks.backoff import compute_delay, error_delay
from tasks.errors import is_retryable_status, retry_after_seconds
from tasks.run_flow import DEADLINE_GRACE_S, task_name
from worker import constants as c
from worker.poller import Again, Handoff, Outcome, PollContext, poll_handler
from worker.scheduler import Claim

HANDOFF_FIELDS = ("status", "required_action", "usage", "last_error", "error", "incomplete_details",
                  "expires_at", "completed_at", "output")
"""The fields of a run or response the finish step reads; the rest (instructions, tools) stays behind."""

FINISH = task_name(c.TASK_FINISH)
CANCEL = task_name(c.TASK_CANCEL)


@poll_handler("run")
async def poll_run(ctx: PollContext, claim: Claim) -> Outcome:
    """Retrieve the run (or response) and decide: poll again later, or hand it to the flow."""
    meta = claim.meta
    now = time.time()
    deadline = meta.get("dl")
    if deadline and now > deadline:
        if not meta.get("cancelling"):
            return Handoff(CANCEL, [claim.job_id, "deadline"])
        if now > deadline + DEADLINE_GRACE_S:
            return Handoff(FINISH, [claim.job_id, {"status": "deadline_exceeded"}])
    try:
        async with ctx.http.get(ctx.base + meta["path"]) as resp:
            raw = await resp.read()
            status_code = resp.status
            headers = resp.headers
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return _failed(ctx, claim, {"code": "connection_error", "message": f"could not reach the API: {exc!r}"},
                       retryable=True)
    if status_code != 200:
        return _http_error(ctx, claim, status_code, raw, headers)
    body: dict[str, Any] = orjson.loads(raw)
    status = body.get("status")
    poll_after = _poll_after(headers)
    if status in ACTIVE or (status == "requires_action" and meta.get("wait")):
        n = int(meta.get("n", 0)) + 1
        delay = compute_delay(n, ctx.policy, poll_after=poll_after)
        if status == "requires_action":
            delay = max(delay, 5.0)
        return Again(delay, {**meta, "n": n, "poll_errors": 0})
    return Handoff(FINISH, [claim.job_id, {k: body[k] for k in HANDOFF_FIELDS if k in body}])


def _poll_after(headers: Any) -> float | None:
    raw = headers.get("openai-poll-after-ms")
    try:
        return float(raw) / 1000 if raw else None
    except ValueError:
        return None


def _http_error(ctx: PollContext, claim: Claim, status: int, raw: bytes, headers: Any) -> Outcome:
    try:
        err = orjson.loads(raw).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        err = {}
    code = err.get("code") or ("rate_limited" if status == 429 else f"http_{status}")
    message = err.get("message") or f"HTTP {status} while polling"
    return _failed(ctx, claim, {"code": code, "message": message}, retryable=is_retryable_status(status),
                   retry_after=retry_after_seconds(headers))


def _failed(ctx: PollContext, claim: Claim, error: dict[str, Any], *, retryable: bool,
            retry_after: float | None = None) -> Outcome:
    errors = int(claim.meta.get("poll_errors", 0)) + 1
    if retryable and errors <= ctx.settings.max_retries:
        delay = error_delay(errors, ctx.policy, retry_after=retry_after)
        return Again(delay, {**claim.meta, "poll_errors": errors})
    return Handoff(FINISH, [claim.job_id, {"status": "error", "error": {**error, "retryable": retryable}}])
