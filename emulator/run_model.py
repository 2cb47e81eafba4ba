"""A run's lifecycle, derived lazily from the clock.

Durations and the outcome are drawn from the seeded RNG when the run is created; status is worked out when
someone looks (`settle`), so ten thousand runs in flight cost nothing between requests. The serialised body
is cached until the next change, which keeps retrieve (the hot path) cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from emulator import answers
from emulator.messages import new_message, text_part
from emulator.state import Store, new_id
from emulator.vector_store_model import first_indexed_file

ACTIVE = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
OUTCOMES = ("failed", "expired", "incomplete")


@dataclass(slots=True)
class ToolCall:
    """One function call the run asked for, and the output submitted for it."""

    id: str
    name: str
    arguments: str
    created: float
    output: str | None = None


@dataclass(slots=True)
class Run:
    """A run and everything needed to derive its status at any instant."""

    id: str
    thread_id: str
    assistant_id: str
    created: float
    expires: float
    segments: list[float]  # in_progress time of each segment: one per function round, plus the last
    functions: list[str]  # functions to call, one per round, in order
    outcome: str  # completed | failed | expired | incomplete, applied at the end of the last segment
    question: str
    settings: dict[str, Any]  # model, instructions, tools, metadata and the other echoed fields
    vector_store_ids: list[str] = field(
        default_factory=list
    )  # searched for a citation when file_search is on
    status: str = "queued"
    seg_index: int = 0
    seg_start: float = 0.0  # when the current segment leaves `queued`
    started: float | None = None
    ended: float | None = None  # completed, failed, cancelled, expired or incomplete time
    cancel_requested: float | None = None
    calls: list[ToolCall] = field(default_factory=list)
    message_id: str | None = None
    usage: dict[str, int] | None = None
    next_change: float = 0.0  # before this instant nothing can change: retrieve serves `body` as is
    body: bytes | None = None


def draw_run(store: Store, run: Run) -> None:
    """Fill in the run's random parts (durations and outcome) from the seeded RNG."""
    profile = store.profile
    rng = store.rng
    run.segments = [profile.run_duration.sample(rng) for _ in range(len(run.functions) + 1)]
    roll = rng.random()
    run.outcome = "completed"
    for name, share in zip(
        OUTCOMES, (profile.p_run_failed, profile.p_run_expired, profile.p_run_incomplete), strict=True
    ):
        if roll < share:
            run.outcome = name
            break
        roll -= share
    run.seg_start = run.created + profile.run_queued_s
    run.next_change = run.seg_start


def settle(store: Store, run: Run, now: float) -> None:
    """Advance the run through every transition whose time has come."""
    if now < run.next_change:
        return
    run.body = None
    while now >= run.next_change:
        if not _step(store, run):
            break
    if run.status not in ACTIVE:
        run.next_change = math.inf


def _step(store: Store, run: Run) -> bool:
    """Take the one transition due at `run.next_change`; False when the run waits on someone else."""
    at = run.next_change
    if run.status == "queued":
        run.status = "in_progress"
        run.started = run.started if run.started is not None else at
        run.next_change = min(at + run.segments[run.seg_index], run.expires)
    elif run.status == "in_progress":
        if at >= run.expires:
            _finish(store, run, "expired", run.expires)
        elif run.seg_index < len(run.functions):
            name = run.functions[run.seg_index]
            run.calls.append(ToolCall(new_id("call_"), name, answers.function_arguments(run.question), at))
            run.status = "requires_action"
            run.next_change = run.expires
        else:
            _finish(store, run, run.outcome, at)
    elif run.status == "requires_action":
        _finish(store, run, "expired", run.expires)
    elif run.status == "cancelling":
        _finish(store, run, "cancelled", at)
    else:
        return False
    return True


def _finish(store: Store, run: Run, status: str, at: float) -> None:
    run.status = status
    run.ended = at
    run.next_change = math.inf
    thread = store.threads.get(run.thread_id)
    if thread is not None and thread.active_run is run:
        thread.active_run = None
    if status in ("completed", "incomplete"):
        _write_answer(store, run, status, at)


def _write_answer(store: Store, run: Run, status: str, at: float) -> None:
    outputs = [(call.name, call.output or "") for call in run.calls]
    text = answers.final_text(run.question, outputs)
    annotations: list[dict[str, Any]] = []
    citation_file = first_indexed_file(store, run.vector_store_ids, at)
    if citation_file is not None:
        marker = answers.citation_marker()
        start = len(text) + 1
        text = f"{text} {marker}"
        annotations.append(
            {
                "type": "file_citation",
                "text": marker,
                "file_citation": {"file_id": citation_file},
                "start_index": start,
                "end_index": start + len(marker),
            }
        )
    prompt, completion = answers.usage_numbers(store.profile, run.question, text)
    run.usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    thread = store.threads.get(run.thread_id)
    if thread is None:
        return
    message = new_message(
        run.thread_id,
        "assistant",
        [text_part(text, annotations)],
        at,
        assistant_id=run.assistant_id,
        run_id=run.id,
        status="completed" if status == "completed" else "incomplete",
    )
    thread.messages.append(message)
    store.messages[message["id"]] = message
    run.message_id = message["id"]


def submit_outputs(store: Store, run: Run, outputs: dict[str, str], now: float) -> None:
    """Record tool outputs for the pending call and start the next segment."""
    for call in run.calls:
        if call.id in outputs:
            call.output = outputs[call.id]
    run.seg_index += 1
    run.status = "queued"
    run.seg_start = now + store.profile.run_queued_s
    run.next_change = run.seg_start
    run.body = None


def request_cancel(store: Store, run: Run, now: float) -> None:
    """Move an active run to `cancelling`; it becomes `cancelled` after the profile's delay."""
    run.status = "cancelling"
    run.cancel_requested = now
    run.next_change = now + store.profile.run_cancelling_s
    run.body = None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _required_action(run: Run) -> dict[str, Any] | None:
    if run.status != "requires_action":
        return None
    call = run.calls[-1]
    tool_call = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [tool_call]}}


def render(run: Run) -> dict[str, Any]:
    """The run as the API's RunObject."""
    status = run.status
    return {
        "id": run.id,
        "object": "thread.run",
        "created_at": int(run.created),
        "thread_id": run.thread_id,
        "assistant_id": run.assistant_id,
        "status": status,
        "required_action": _required_action(run),
        "last_error": {"code": "server_error", "message": "Sorry, something went wrong."}
        if status == "failed"
        else None,
        "expires_at": int(run.expires) if status in ACTIVE else None,
        "started_at": _int(run.started),
        "cancelled_at": _int(run.ended) if status == "cancelled" else None,
        "failed_at": _int(run.ended) if status == "failed" else None,
        "completed_at": _int(run.ended) if status == "completed" else None,
        "incomplete_details": {"reason": "max_completion_tokens"} if status == "incomplete" else None,
        **run.settings,
        "usage": run.usage,
    }


def body(store: Store, run: Run) -> bytes:
    """The run's current JSON body, cached until its next change."""
    settle(store, run, store.now())
    if run.body is None:
        run.body = orjson.dumps(render(run))
    return run.body


def precise(run: Run) -> dict[str, Any]:
    """Float timestamps and metadata for the admin API (the benchmark's detection lag needs them)."""
    return {
        "id": run.id,
        "thread_id": run.thread_id,
        "status": run.status,
        "created_at_precise": run.created,
        "started_at_precise": run.started,
        "ended_at_precise": run.ended,
        "completed_at_precise": run.ended if run.status == "completed" else None,
        "expires_at_precise": run.expires,
        "outcome": run.outcome,
        "metadata": run.settings.get("metadata", {}),
    }
