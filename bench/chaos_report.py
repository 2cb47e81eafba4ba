"""The chaos soak's figures as text: the summary the soak prints, and the "Chaos soak" section that
`bench.report` puts in ``bench/RESULTS.md`` from every ``bench/results/chaos*.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_all(out: Path) -> list[dict[str, Any]]:
    """Every soak's figures in ``out``, the largest first."""
    results = [json.loads(p.read_text()) for p in sorted(out.glob("chaos*.json"))]
    return sorted(results, key=lambda r: -r["jobs"]["total"])


def _restarts(result: dict[str, Any]) -> str:
    rows = []
    after = result["sweeps"]["after_restart"]
    for i, (r, s) in enumerate(zip(result["redis_restarts"], after, strict=False), 1):
        rows.append(
            f"#{i} at {r['at_s']:.0f} s, down {r['down_s']:.1f} s:"
            f" next job end {_s(r['next_job_end_after_s'])},"
            f" schedule drained {_s(r['schedule_drained_after_s'])}"
            f" (peak lag {r['peak_lag_after_s']:.1f} s),"
            f" {s['sweeps']} sweep jobs after it (first {_s(s['first_after_s'])};"
            f" beat sent {s.get('beat_sent', '?')}, {s.get('expired_unrun', '?')} expired in the queue unrun)"
        )
    return "; ".join(rows) or "none"


def _counts(counts: dict[str, Any]) -> str:
    """``{"a": 1, "b": 2}`` as "a 1, b 2" ("none" when empty)."""
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def _after(value: float | None) -> str:
    return "none before the re-drive" if value is None else f"{value:.2f} s after it"


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _ended(result: dict[str, Any]) -> str:
    jobs = result["jobs"]
    statuses: dict[str, int] = {}
    for counts in jobs["statuses"].values():
        for status, n in counts.items():
            statuses[status] = statuses.get(status, 0) + n
    shown = ", ".join(f"{s} {n:,}" for s, n in sorted(statuses.items()))
    return f"{jobs['total'] - len(jobs['not_ended']):,} ({shown})"


def _stall(result: dict[str, Any]) -> str:
    stalls = result["stalls"]
    top = stalls["top"][0] if stalls["top"] else None
    where = f" ({top['variant']} {top['id']}, {top['from']} -> {top['to']})" if top else ""
    return (
        f"{stalls['max_s']:.1f} s{where}; {stalls['max_not_shared_s']:.1f} s outside shared threads;"
        f" {stalls['over_60_s']} jobs over 60 s"
    )


def _orphans(result: dict[str, Any]) -> str:
    orph = result["orphans"]
    return (
        f"{orph['orphans']} on {orph['jobs_with_orphans']} of {orph['responses_jobs']:,} responses jobs"
        f" (at most {orph['max_per_create']} per create, each one attempt whose answer was lost;"
        f" {len(orph['after_kept'])} made after the response the job kept); created around:"
        f" {_counts(orph['explained_by'])}; each cancelled through the API (status before -> after:"
        f" {_counts(orph['cancelled'])})"
    )


def figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows shared by the summary and the report."""
    jobs, kills, runs = result["jobs"], result["kills"], result["runs_per_job"]
    redrives, faults, load = result["redrives"], result["faults"], result["load_avg"]
    cleanup = result.get("cleanup_target_errors", {"jobs": 0, "codes": {}})
    variants = ", ".join(f"{v} {n}" for v, n in jobs["by_variant"].items())
    injected = sum(faults["injected"].values())
    return [
        ("jobs", f"{jobs['total']:,} ({variants})"),
        ("ended", _ended(result)),
        ("worker kills (SIGKILL)", f"{kills['count']} (every {result['settings']['kill_every_s']:.0f} s)"),
        ("Redis restarts (SIGKILL, AOF)", f"{len(result['redis_restarts'])}: {_restarts(result)}"),
        ("max stall (no event, not ended)", _stall(result)),
        (
            "re-drives (job.redriven)",
            f"{redrives['events']} on {redrives['jobs']} jobs ({_counts(redrives['by_variant'])});"
            f" {redrives.get('after_a_kill_within_1s', '?')} of them had a worker SIGKILLed within 1 s after"
            " their last event",
        ),
        ("dead letters", f"{result['dead_letters']['count']} ({_counts(result['dead_letters']['codes'])})"),
        (
            "remote runs per assistants job",
            ", ".join(
                f"{n:,} jobs with {k} run{'' if str(k) == '1' else 's'}"
                for k, n in runs["runs_distribution"].items()
            ),
        ),
        ("orphan responses", _orphans(result)),
        (
            "sweeps",
            f"beat sent {result['sweeps'].get('beat_sent', '?')}; {result['sweeps']['total']} became clean-up"
            f" jobs, {result['sweeps'].get('expired_unrun', '?')} expired in the queue unrun",
        ),
        ("longest broker queues", _counts(result.get("peak_queue_lengths", {}))),
        (
            "clean-up jobs completed with a target's listing failed",
            f"{cleanup['jobs']} ({_counts(cleanup['codes'])})",
        ),
        (
            "faults injected",
            f"{injected:,} of {faults['requests']:,} requests ({100 * faults['share']:.1f}%):"
            f" {_counts(faults['injected'])}",
        ),
        ("wall time", f"{result['wall_s']:.0f} s (submitting {result['submit_s']:.0f} s)"),
        (
            "load average (1 min) during the run",
            f"mean {load.get('mean')}, max {load.get('max')} on {result['machine']['cores']} cores",
        ),
    ]


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The summary the soak prints when it ends."""
    lines = ["", f"Chaos soak: {result['command'].strip()}", ""]
    lines += [f"  {name}: {value}" for name, value in figures(result)]
    lines += ["", "Checks:"]
    lines += [f"  [{'ok' if c['ok'] else 'FAILED'}] {c['name']}: {c['detail']}" for c in result["checks"]]
    for job in result["jobs"]["not_ended"]:
        lines.append(f"  not ended: {json.dumps(job)}")
    for job in result["jobs"].get("not_completed", []):
        lines.append(f"  {job['status']}: {job['id']} ({job['variant']}): {job['error']}")
    lines += ["", f"Logs: {result['logs']}", "PASSED" if result["passed"] else "FAILED"]
    return lines


def section(results: list[dict[str, Any]]) -> list[str]:
    """The "Chaos soak" section of RESULTS.md, one table per soak."""
    if not results:
        return []
    first = results[0]["settings"]
    env = " ".join(f"{k}={v}" for k, v in first["env"].items())
    profile = first["profile"]
    parts = [
        "## Chaos soak (bench/chaos.py)",
        "",
        "`make chaos` (`python -m bench.chaos`: 2,000 jobs; `--jobs 200` for a quick one) starts a private"
        " Redis with AOF, the emulator (a thread of the soak's own process), worker processes"
        " (`ajobs worker`) and one beat (`ajobs beat`). It submits a mix of jobs through"
        " `Jobs.submit_many` over the first part of the run while it SIGKILLs a random worker every"
        f" {first['kill_every_s']:.0f} s (starting a replacement), SIGKILLs Redis and starts it again"
        f" {first['redis_restarts']} times (down {first['redis_down_s']:.0f} s each), and the emulator"
        " injects faults; then it waits (bounded) for every job to end and checks what the reliability"
        " design promises.",
        "",
        f"Settings: `{env}`. Faults: {_faults(first['faults'])}. Emulator: runs and responses of"
        f" {_dist(profile['run_duration'])}, files indexed in {_dist(profile['file_index_duration'])},"
        f" `openai-poll-after-ms` {profile['poll_after_ms']}.",
        "",
        "*Max stall*: the longest any job went without an event on `aj:events` while not ended (jobs on a"
        " shared thread or conversation wait their turn, so the figure outside them is given too)."
        " *Recovery*: from Redis answering again to the next job end, and to the schedule drained (its"
        " most overdue entry waiting under 3 s). *Orphan responses*: responses carrying a job's id beyond"
        " its rounds (the Responses API cannot be searched by metadata, so a create whose answer was lost"
        " is made again, leaving one orphan per lost answer); one made after the response its job kept"
        " would be a second run. The soak cancels each orphan through the API.",
        "",
    ]
    for result in results:
        parts += _one(result)
    return parts


def _one(result: dict[str, Any]) -> list[str]:
    settings, machine = result["settings"], result["machine"]
    names = _status_names(result)
    verdict = "passed" if result["passed"] else "FAILED"
    lines = [
        f"### {result['jobs']['total']:,} jobs, {result['measured_at']}: {verdict}",
        "",
        f"Command: `{result['command'].strip()}`. Workers: {settings['workers']} x concurrency"
        f" {settings['concurrency']}; seed {settings['seed']}.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {name} | {value.replace('|', '/')} |" for name, value in figures(result)],
        "",
        "| variant | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for variant, counts in result["jobs"]["statuses"].items():
        lines.append(f"| {variant} | " + " | ".join(f"{counts.get(s, 0):,}" for s in names) + " |")
    lines += _job_lists(result)
    lines += ["", "| check | result |", "|---|---|"]
    lines += [f"| {c['name']} | {'ok' if c['ok'] else 'FAILED'}: {c['detail']} |" for c in result["checks"]]
    lines += [
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), Python {machine['python']};"
        f" load average at start {machine['load_avg_at_start']}, during the run {result['load_avg']}.",
        "",
    ]
    return lines


def _job_lists(result: dict[str, Any]) -> list[str]:
    """The jobs that did not complete, and the re-driven ones, one line each."""
    lines = []
    failed = result["jobs"].get("not_completed", []) + result["jobs"]["not_ended"]
    if failed:
        lines += ["", "Jobs that did not complete:", ""]
        lines += [
            f"- `{j['id']}` ({j['variant']}) {j['status']}: {(j['error'] or {}).get('message')}"
            for j in failed
        ]
    detail = result["redrives"].get("detail", [])
    if detail:
        lines += [
            "",
            "Re-driven jobs (the last event before the re-drive; a worker or Redis SIGKILL after it):",
            "",
        ]
        for j in detail:
            b = j.get("before_redrive", {})
            lines.append(
                f"- `{j['id']}` ({j['variant']}, {j['status']}): after `{b.get('last_event')}`,"
                f" re-driven {b.get('redriven_after_s')} s later; the next worker SIGKILL"
                f" {_after(b.get('worker_kill_after_s'))}, the next Redis SIGKILL"
                f" {_after(b.get('redis_kill_after_s'))}"
            )
    return lines


def _status_names(result: dict[str, Any]) -> list[str]:
    names = {s for counts in result["jobs"]["statuses"].values() for s in counts}
    return sorted(names, key=lambda s: (s != "completed", s))


def _dist(d: dict[str, Any]) -> str:
    return f"{d['min']:g}-{d['max']:g} s" if d["kind"] == "uniform" else json.dumps(d)


def _faults(f: dict[str, Any]) -> str:
    return (
        f"on every request 429 (Retry-After {f['retry_after_s']:g} s) {100 * f['rate_429']:g}%,"
        f" 503 {100 * f['rate_503']:g}%, dropped connection {100 * f['rate_drop']:g}%; for"
        f" {f['create_s']:g} s of every {f['cycle_s']:g} s only POSTs on the create paths get faults:"
        f" those plus {100 * f['rate_drop_after']:g}% answers dropped after the create took effect"
    )
