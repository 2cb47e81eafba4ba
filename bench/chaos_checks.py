"""The chaos soak's figures and checks, computed once every job has ended (or the wait ran out): statuses,
remote runs per job, orphan responses, stalls, re-drives, recovery after each Redis restart, sweeps."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from bench.chaos_load import Submitted, Submitter
from bench.chaos_watch import ENDED, Trail
from schemas.job import JobRecord

DRAIN_LAG_S = 3.0
"""The schedule counts as drained once its most overdue entry waits no longer than this."""
STUCK_SWEEP_S = 60.0
"""A sweep queued this long before the end and not ended counts as stuck."""
TOP = 5


@dataclass
class Restart:
    """One Redis SIGKILL and start (unix seconds)."""

    killed_at: float
    started_at: float


@dataclass
class Check:
    """One pass/fail check of the soak, with what it saw."""

    name: str
    ok: bool
    detail: str


def brief(record: JobRecord | None, variant: str, trail: Trail | None) -> dict[str, Any]:
    """What a reader needs to look into a job: its record's moving parts and its events."""
    if record is None:
        return {"variant": variant, "record": None}
    return {
        "id": record.id,
        "variant": variant,
        "status": record.status.value,
        "remote": record.remote,
        "attempts": record.attempts,
        "retries": record.retries,
        "redrives": record.redrives,
        "error": record.error.model_dump() if record.error else None,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "events": [[round(at, 3), typ] for at, typ, _ in (trail.events if trail else [])],
    }


def statuses(
    submitted: Mapping[str, Submitted], records: Mapping[str, JobRecord | None]
) -> dict[str, dict[str, int]]:
    """Status counts per variant."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for job_id, sub in submitted.items():
        record = records.get(job_id)
        table[sub.variant][record.status.value if record else "missing"] += 1
    return {variant: dict(counts) for variant, counts in sorted(table.items())}


def runs_per_job(
    submitted: Mapping[str, Submitted], records: Mapping[str, JobRecord | None], counters: Mapping[str, Any]
) -> dict[str, Any]:
    """Remote runs the emulator counted per assistants job: their distribution and every job without
    exactly one."""
    runs: Mapping[str, int] = counters.get("runs_per_job", {})
    jobs = [j for j, s in submitted.items() if s.variant.startswith("run/assistants")]
    counts = Counter(runs.get(j, 0) for j in jobs)
    odd = [
        {"id": j, "variant": submitted[j].variant, "runs": runs.get(j, 0), "status": _status(records.get(j))}
        for j in jobs
        if runs.get(j, 0) != 1
    ]
    return {"jobs": len(jobs), "runs_distribution": dict(sorted(counts.items())), "not_one": odd}


def _status(record: JobRecord | None) -> str:
    return record.status.value if record else "missing"


def stalls(trails: Mapping[str, Trail], submitted: Mapping[str, Submitted], until: float) -> dict[str, Any]:
    """The longest time each job went without an event while not ended (to `until` for a job that never
    ended); the longest over all jobs, and the top few."""
    rows = []
    for job_id, sub in submitted.items():
        trail = trails.get(job_id)
        if not trail or not trail.events:
            rows.append((until - sub.at, job_id, "submitted", "(no event)"))
            continue
        events = trail.events
        best = (0.0, "", "")
        for (a, ta, _), (b, tb, _) in pairwise(events):
            best = max(best, (b - a, ta, tb))
        if not trail.ends:
            best = max(best, (until - events[-1][0], events[-1][1], "(not ended)"))
        rows.append((best[0], job_id, best[1], best[2]))
    rows.sort(reverse=True)
    top = [
        {"s": round(s, 2), "id": j, "variant": submitted[j].variant, "from": a, "to": b}
        for s, j, a, b in rows[:TOP]
    ]
    shared = [r for r in rows if not submitted[r[1]].variant.endswith(("+thread", "+conversation"))]
    return {
        "max_s": top[0]["s"] if top else 0.0,
        "top": top,
        "max_not_shared_s": round(shared[0][0], 2) if shared else 0.0,
        "over_60_s": sum(1 for r in rows if r[0] > 60),
    }


def redrives(
    trails: Mapping[str, Trail],
    submitted: Mapping[str, Submitted],
    records: Mapping[str, JobRecord | None],
    kills: Sequence[float],
    restarts: Sequence[Restart],
) -> dict[str, Any]:
    """`job.redriven` events: how many, on how many jobs, per variant, and each re-driven job in brief with
    what preceded its re-drive: its last event, and the first worker kill or Redis kill after that event."""
    per_job = {j: sum(1 for e in t.events if e[1] == "job.redriven") for j, t in trails.items()}
    hit = {j: n for j, n in per_job.items() if n}
    by_variant = Counter(submitted[j].variant if j in submitted else "sweep" for j in hit)
    detail = []
    for j in sorted(hit):
        row = brief(records.get(j), submitted[j].variant if j in submitted else "sweep", trails.get(j))
        row["before_redrive"] = _before_redrive(trails[j], kills, restarts)
        detail.append(row)
    return {
        "events": sum(hit.values()),
        "jobs": len(hit),
        "by_variant": dict(by_variant),
        "max_per_job": max(hit.values(), default=0),
        "after_a_kill_within_1s": sum(
            1 for d in detail if (d["before_redrive"]["worker_kill_after_s"] or 9) <= 1
        ),
        "detail": detail,
    }


def _before_redrive(trail: Trail, kills: Sequence[float], restarts: Sequence[Restart]) -> dict[str, Any]:
    """The job's last event before its first re-drive, and how long after it a worker or Redis was killed."""
    events = trail.events
    first = next(i for i, e in enumerate(events) if e[1] == "job.redriven")
    last_at, last_type, _ = events[first - 1] if first else (events[0][0], "(none)", "")
    redriven_at = events[first][0]
    kill = next((k for k in sorted(kills) if last_at - 0.5 <= k <= redriven_at), None)
    redis = next((r.killed_at for r in restarts if last_at - 0.5 <= r.killed_at <= redriven_at), None)
    return {
        "last_event": last_type,
        "redriven_after_s": round(redriven_at - last_at, 2),
        "worker_kill_after_s": round(kill - last_at, 2) if kill is not None else None,
        "redis_kill_after_s": round(redis - last_at, 2) if redis is not None else None,
    }


def jobs(
    submitter: Submitter, records: Mapping[str, JobRecord | None], trails: Mapping[str, Trail]
) -> dict[str, Any]:
    """The jobs submitted: per variant and status, and in brief every one that did not complete."""
    subs = submitter.submitted
    status = {j: _status(records.get(j)) for j in subs}
    not_ended = [j for j, s in status.items() if s == "missing" or s not in ENDED]
    others = [j for j, s in status.items() if s in ENDED and s != "completed"]
    return {
        "total": len(subs),
        "by_variant": dict(sorted(Counter(s.variant for s in subs.values()).items())),
        "statuses": statuses(subs, records),
        "not_ended": [brief(records.get(j), subs[j].variant, trails.get(j)) for j in not_ended],
        "not_completed": [brief(records.get(j), subs[j].variant, trails.get(j)) for j in others],
        "submit_calls_failed": len(submitter.failed_calls),
        "submits_found_written": submitter.again,
    }


def cleanup_target_errors(records: Mapping[str, JobRecord | None]) -> dict[str, Any]:
    """Clean-up jobs that completed with a target whose listing failed (the job goes on with the other
    targets and reports the error in its result): how many, by error code, and their ids."""
    codes: Counter[str] = Counter()
    ids = []
    for record in records.values():
        if record is None or record.kind.value != "cleanup" or not record.result:
            continue
        errors = [t["error"]["code"] for t in record.result.get("targets", {}).values() if "error" in t]
        if errors:
            ids.append(record.id)
            codes.update(errors)
    return {"jobs": len(ids), "codes": dict(codes), "ids": ids}


def ended_twice(trails: Mapping[str, Trail]) -> list[dict[str, Any]]:
    """Jobs with more than one end event."""
    return [
        {"id": j, "ends": [[round(at, 3), typ] for at, typ, _ in t.ends]}
        for j, t in trails.items()
        if len(t.ends) > 1
    ]


def recovery(
    restarts: Sequence[Restart], trails: Mapping[str, Trail], samples: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per Redis restart: how long it was down, seconds from the start to the next job end and to the
    schedule drained (lag <= `DRAIN_LAG_S`), and the peak schedule lag after the start."""
    end_times = sorted(at for t in trails.values() for at, _, _ in t.ends)
    rows = []
    for r in restarts:
        next_end = next((at for at in end_times if at >= r.started_at), None)
        after = [s for s in samples if s["at"] >= r.started_at and not s.get("down")]
        drained = next((s["at"] for s in after if s["lag"] <= DRAIN_LAG_S), None)
        window = [s["lag"] for s in after if s["at"] <= (drained or float("inf"))]
        rows.append(
            {
                "down_s": round(r.started_at - r.killed_at, 2),
                "next_job_end_after_s": round(next_end - r.started_at, 2) if next_end else None,
                "schedule_drained_after_s": round(drained - r.started_at, 2) if drained else None,
                "peak_lag_after_s": round(max(window, default=0.0), 2),
            }
        )
    return rows


def sweeps(
    trails: Mapping[str, Trail],
    submitted: Mapping[str, Submitted],
    restarts: Sequence[Restart],
    until: float,
    beat: Mapping[str, Sequence[float]],
) -> dict[str, Any]:
    """Clean-up jobs beat's sweeps made (those the soak did not submit): how many in all; after each Redis
    restart (up to the next kill) how many beat sent, how many expired in the queue unrun, how many became
    jobs and the first one's delay; and any sweep job stuck."""
    sweep_trails = {j: t for j, t in trails.items() if t.kind == "cleanup" and j not in submitted}
    queued = sorted((t.events[0][0], j) for j, t in sweep_trails.items() if t.events)
    after = []
    for i, r in enumerate(restarts):
        end = restarts[i + 1].killed_at if i + 1 < len(restarts) else until
        fired = [at for at, _ in queued if r.started_at <= at < end]
        after.append(
            {
                "beat_sent": sum(1 for at in beat.get("sent", ()) if r.started_at <= at < end),
                "expired_unrun": sum(1 for at in beat.get("expired", ()) if r.started_at <= at < end),
                "sweeps": len(fired),
                "first_after_s": round(fired[0] - r.started_at, 2) if fired else None,
                "window_s": round(end - r.started_at, 1),
            }
        )
    stuck = [j for at, j in queued if not sweep_trails[j].ends and at < until - STUCK_SWEEP_S]
    return {
        "total": len(queued),
        "beat_sent": len(beat.get("sent", ())),
        "expired_unrun": len(beat.get("expired", ())),
        "after_restart": after,
        "stuck": stuck,
    }


def checks(result: Mapping[str, Any]) -> list[Check]:
    """The soak's pass/fail checks over its figures."""
    jobs = result["jobs"]
    runs = result["runs_per_job"]
    orph = result["orphans"]
    sw = result["sweeps"]
    kills = result["kills"]
    not_completed = {
        variant: {s: n for s, n in counts.items() if s != "completed"}
        for variant, counts in jobs["statuses"].items()
    }
    not_completed = {v: c for v, c in not_completed.items() if c}
    return [
        Check(
            "every job ended", not jobs["not_ended"], f"{len(jobs['not_ended'])} not ended of {jobs['total']}"
        ),
        Check("every job completed", not not_completed, f"others: {not_completed or 'none'}"),
        Check("no job ended twice", not result["ended_twice"], f"{len(result['ended_twice'])} ended twice"),
        Check(
            "one remote run per assistants job",
            not runs["not_one"],
            f"{runs['jobs']} jobs, {len(runs['not_one'])} without exactly one run",
        ),
        Check(
            "no second response after the one a job kept",
            not orph["after_kept"] and not orph["fewer_responses_than_rounds"] and not orph["kept_unknown"],
            f"{len(orph['after_kept'])} made after the kept one; jobs whose kept response is unknown:"
            f" {len(orph['kept_unknown'])}",
        ),
        Check(
            "every orphan response comes from a create whose answer was lost",
            "unexplained" not in orph["explained_by"],
            f"{orph['orphans']} orphans on {orph['jobs_with_orphans']} jobs (at most {orph['max_per_create']}"
            f" per create), unexplained: {orph['explained_by'].get('unexplained', 0)}",
        ),
        Check(
            "sweeps fired after each Redis restart",
            all(a["sweeps"] > 0 for a in sw["after_restart"]),
            "sweep jobs after each restart: "
            + ", ".join(
                f"{a['sweeps']} (beat sent {a['beat_sent']}, {a['expired_unrun']} expired unrun)"
                for a in sw["after_restart"]
            ),
        ),
        Check("no sweep stuck", not sw["stuck"], f"{len(sw['stuck'])} stuck"),
        Check(
            "no process exited on its own",
            not kills["exited_on_their_own"] and kills["beat_alive"],
            f"{kills['exited_on_their_own'] or 'none'}; beat alive: {kills['beat_alive']}",
        ),
    ]
