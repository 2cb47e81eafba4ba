"""Orphan responses of the chaos soak: responses carrying a job's id (metadata ``aj_job_id``) that the job
did not keep.

The Responses API cannot be searched by metadata, so an attempt at a create whose answer never came back (the
connection dropped after the create took effect, the worker was SIGKILLed inside the call, Redis went away
before the id was saved) is made again, and the first response stays behind. That is the documented cost;
a second response made *after* the one the job kept would be a second run, which is a bug.

A job's responses are grouped by the create they answer: the start, or the tool-output round. A tool job's
start made function calls; its round answered them. The response the job kept is, for its last create, the
record's ``remote.response_id``, and for a tool job's start, the one whose calls were answered in the job's
conversation. Each orphan is cancelled through the API and explained by what the soak was doing when it was
created.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from bench.chaos_checks import Restart
from bench.chaos_load import Submitted
from emulator.admin_client import EmulatorAdmin
from schemas.job import JobRecord

TASK_S = 15.0
"""A task's hard time limit in the soak (`AJ_TASK_TIME_LIMIT`): how long after a create a kill can still
cut off the attempt that made it."""


@dataclass
class Timeline:
    """What the soak did, to explain each orphan: worker kills, Redis restarts, the fault window at a time."""

    kills: Sequence[float]
    restarts: Sequence[Restart]
    window_at: Callable[[float], str]

    def explain(self, created: float) -> str:
        """Why the attempt that made a response created at ``created`` may not have learnt its id."""
        if self.window_at(created) == "creates":
            return "answer dropped (create faults on)"
        if any(r.killed_at - TASK_S <= created <= r.started_at + 1 for r in self.restarts):
            return "redis restart"
        if any(0 <= k - created <= TASK_S for k in self.kills):
            return "worker killed"
        return "unexplained"


def orphans(
    submitted: Mapping[str, Submitted],
    records: Mapping[str, JobRecord | None],
    counters: Mapping[str, Any],
    api: openai.OpenAI,
    admin: EmulatorAdmin,
    timeline: Timeline,
) -> dict[str, Any]:
    """Find, explain and cancel the orphans of every responses-backend job (see the module's docstring)."""
    per_job: Mapping[str, int] = counters.get("responses_per_job", {})
    jobs = [j for j, s in submitted.items() if s.variant.startswith("run/responses")]
    extra, short = {}, []
    for j in jobs:
        legit, n = _legit(records.get(j)), per_job.get(j, 0)
        if n > legit:
            extra[j] = n - legit
        elif n < legit:
            short.append({"id": j, "responses": n, "rounds": legit})
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in admin.responses() if extra else []:
        job_id = (row.get("metadata") or {}).get("aj_job_id")
        if job_id in extra:
            rows[job_id].append(row)
    affected = [_job(j, rows[j], submitted[j].variant, records.get(j), api, timeline) for j in sorted(extra)]
    found = [o for a in affected for o in a["orphans"]]
    return {
        "responses_jobs": len(jobs),
        "jobs_with_orphans": len(extra),
        "orphans": len(found),
        "max_per_create": max((a["max_per_create"] for a in affected), default=0),
        "after_kept": [o["id"] for o in found if o["after_kept"]],
        "kept_unknown": [a["job_id"] for a in affected if a["kept_unknown"]],
        "cancelled": dict(Counter(f"{o['status']} -> {o['status_after_cancel']}" for o in found)),
        "explained_by": dict(Counter(o["explained_by"] for o in found)),
        "fewer_responses_than_rounds": short,
        "affected": affected,
    }


def _legit(record: JobRecord | None) -> int:
    """Responses the job made and kept: one per round (and one more if it was made again while queued)."""
    if record is None or not record.remote.get("response_id"):
        return 0
    return int(record.remote.get("rounds", 1)) + (1 if record.remote.get("requeued_from") else 0)


def _job(
    job_id: str,
    rows: list[dict[str, Any]],
    variant: str,
    record: JobRecord | None,
    api: openai.OpenAI,
    timeline: Timeline,
) -> dict[str, Any]:
    tool_job = bool(record and record.request.get("tools"))
    calls = {row["id"]: _calls(api, row) for row in rows}
    groups = _by_create(rows, calls, tool_job)
    kept = _kept(record, groups, calls, api, tool_job)
    found = []
    for create, members in groups.items():
        keep = next((m for m in members if m["id"] == kept.get(create)), None)
        for row in members:
            if keep is not None and row["id"] == keep["id"]:
                continue
            if keep is None and row is members[-1]:
                continue  # the job's own is not known: take the newest
            found.append(_orphan(row, create, keep, api, timeline))
    return {
        "job_id": job_id,
        "variant": variant,
        "status": record.status.value if record else "missing",
        "rounds": record.remote.get("rounds") if record else None,
        "responses": len(rows),
        "max_per_create": max((len(m) - 1 for m in groups.values()), default=0),
        "kept_unknown": sorted(set(groups) - set(kept)),
        "orphans": found,
    }


def _orphan(
    row: dict[str, Any], create: str, keep: dict[str, Any] | None, api: openai.OpenAI, timeline: Timeline
) -> dict[str, Any]:
    created = row["created_at_precise"]
    return {
        "id": row["id"],
        "create": create,
        "created_at": created,
        "after_kept": keep is not None and created > keep["created_at_precise"],
        "status": row["status"],
        "status_after_cancel": api.responses.cancel(row["id"]).status,
        "explained_by": timeline.explain(created),
    }


def _calls(api: openai.OpenAI, row: dict[str, Any]) -> list[str] | None:
    """The call ids of a completed response's function calls (None while it is still going)."""
    if row["status"] != "completed":
        return None
    output = api.responses.retrieve(row["id"]).output
    return [str(getattr(item, "call_id", "")) for item in output if item.type == "function_call"]


def _by_create(
    rows: list[dict[str, Any]], calls: Mapping[str, list[str] | None], tool_job: bool
) -> dict[str, list[dict[str, Any]]]:
    """A job's responses by the create they answer, oldest first. A response still going (only an orphan
    can be: the job's own have ended) joins the create of the next completed one, since an orphan is made
    before the attempt that replaced it."""
    ordered = sorted(rows, key=lambda r: r["created_at_precise"])
    labels: list[str | None] = []
    for row in ordered:
        made = calls[row["id"]]
        labels.append("start" if not tool_job or made else None if made is None else "tool outputs")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, row in enumerate(ordered):
        groups[labels[i] or next((x for x in labels[i + 1 :] if x), "start")].append(row)
    return groups


def _kept(
    record: JobRecord | None,
    groups: Mapping[str, list[dict[str, Any]]],
    calls: Mapping[str, list[str] | None],
    api: openai.OpenAI,
    tool_job: bool,
) -> dict[str, str]:
    """The response the job kept for each create it made, where that can be known."""
    if record is None or not record.remote.get("response_id"):
        return {}
    final = str(record.remote["response_id"])
    if not tool_job:
        return {"start": final}
    kept = {"tool outputs": final} if "tool outputs" in groups else {"start": final}
    conversation = record.remote.get("conversation_id")
    if "tool outputs" in groups and conversation:
        items = api.conversations.items.list(conversation, limit=100)
        answered = {str(getattr(i, "call_id", "")) for i in items if i.type == "function_call_output"}
        for row in groups.get("start", []):
            if set(calls[row["id"]] or ()) & answered:
                kept["start"] = row["id"]
    return kept
