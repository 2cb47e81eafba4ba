"""S5 webhook-first supervision: N background responses (5-60 s each) submitted at once, learnt of by
webhook (the emulator signs one to ``ajobs webhooks`` as each ends, polls only the safety net), against the
responses backend polling (webhooks off, today's policy) and the seed pattern for responses (a thread per
job, ``responses.retrieve`` every second).

    python -m bench.s5_webhooks --quick|--full [--only webhooks,drop,polling,seed] [--out DIR]
    python -m bench.runner --full --only s5

Per contender: peak in flight (the emulator's clock), detection lag (the job's end event, or the seed's
thread seeing the end, minus the emulator's ``completed_at``), API requests per job (conversation create,
response creates, retrieves: mean and p99), CPU per job of the contender's processes (the worker and the
receiver; Redis's own CPU beside it), how ends were learnt, and jobs lost or stuck. ``drop`` is the webhook
run with 10% of deliveries dropped by the emulator: those jobs end by their safety poll.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    API_KEY,
    RESULTS_DIR,
    ROOT,
    SHARING,
    Progress,
    TreeSampler,
    clean_env,
    contender_cores,
    emulator,
    free_port,
    percentiles,
    pin_to,
    say,
    share_cores,
    stop,
    write_result,
)
from bench.contenders import _celery_worker, _drain, _EndReader, peak_in_flight, trial_dir
from devkit.redis_server import private_redis
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

PROFILE: dict[str, Any] = {
    "seed": 5,
    "response_duration": {"kind": "uniform", "min": 5.0, "max": 60.0},
    "poll_after_ms": 1000,
}
"""Background responses of 5-60 s, the API's default poll hint of 1 s."""
SECRET = "whsec_" + base64.b64encode(b"assistant-jobs bench webhook secret").decode()
SAFETY_POLL_S = float(Settings.model_fields["webhook_safety_poll"].default)
"""The safety period (AJ_WEBHOOK_SAFETY_POLL's default): a dropped webhook costs at most this much lag."""
DROP = 0.1
"""Share of webhook deliveries the emulator drops in the ``drop`` run."""
SEED_THREAD_CAP = 3000
"""Most threads the seed pattern gets (as in S1: above it, threads and the SDK's 1,000 connections are the
limit, and a thread per job retrieving every second needs more CPU than one core has)."""
PLANS = {
    "tiny": {"webhooks": 30, "drop": 30, "polling": 30, "seed": 30},
    "quick": {"webhooks": 1000, "drop": 1000, "polling": 1000, "seed": 1000},
    "full": {"webhooks": 10_000, "drop": 10_000, "polling": 10_000, "seed": 3000},
}
TINY_PROFILE = {**PROFILE, "response_duration": {"kind": "uniform", "min": 0.5, "max": 1.0}}


def _request(index: int) -> dict[str, Any]:
    return {
        "kind": "run",
        "backend": "responses",
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"question {index}"}],
    }


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.1)


def _redis_cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def ours(
    profile: dict[str, Any], jobs_n: int, webhooks: bool, drop: float, workdir: Path, label: str
) -> dict[str, Any]:
    """The responses backend: a worker (default concurrency) and, with webhooks, the receiver."""
    hook_port = free_port()
    hooked = {**profile, "webhook_secret": SECRET}
    if webhooks:
        hooked["webhook_urls"] = [f"http://127.0.0.1:{hook_port}/webhooks/openai"]
    with emulator(hooked) as (base_url, admin), private_redis() as redis_url:
        env = clean_env(
            AJ_REDIS_URL=redis_url,
            OPENAI_BASE_URL=base_url,
            OPENAI_API_KEY=API_KEY,
            AJ_WEBHOOKS="true" if webhooks else "false",
            AJ_WEBHOOK_SECRET=SECRET,
            AJ_WEBHOOK_PORT=str(hook_port),
            AJ_WEBHOOK_SAFETY_POLL=f"{SAFETY_POLL_S:g}",
        )
        receiver = None
        if webhooks:
            cmd = [sys.executable, "-m", "worker.cli", "webhooks"]
            log = (workdir / f"{label}-receiver.log").open("wb")
            receiver = subprocess.Popen(
                cmd, cwd=ROOT, env=env, preexec_fn=pin_to(contender_cores()), stdout=log, stderr=log
            )
            _wait_listening(hook_port, receiver)
        worker = _celery_worker("worker.app", env, workdir / f"{label}.log")
        if drop:
            admin.set_webhook_faults(rate_drop=drop, seed=3)
        settings = Settings(redis_url=redis_url)
        jobs = Jobs(settings, celery=create_app(settings))
        reader = _EndReader(jobs)
        reader.start()
        requests = [_request(i) for i in range(jobs_n)]
        timeout = 60 + SAFETY_POLL_S + 120 + jobs_n / 25
        try:
            admin.reset_counters()
            redis_cpu = _redis_cpu(jobs.store.redis)
            samplers = [TreeSampler(worker.pid)] + ([TreeSampler(receiver.pid)] if receiver else [])
            for sampler in samplers:
                sampler.__enter__()
            submitted_at, began = time.time(), time.monotonic()
            refs = jobs.submit_many(requests)
            _drain(Progress(f"S5 {label} {jobs_n:,}", jobs_n), lambda: len(reader.ended), jobs_n, timeout)
            wall = time.monotonic() - began
            for sampler in samplers:
                sampler.__exit__(None, None, None)
            redis_cpu = _redis_cpu(jobs.store.redis) - redis_cpu
            counters = admin.counters()
            hooks = admin.webhook_counters()
            truth = {row["id"]: row for row in admin.responses()}
        finally:
            reader.halt.set()
            reader.join(5)
            stop(worker, 60)
            if receiver is not None:
                stop(receiver)
        records = jobs.store.jobs.get_many([r.id for r in refs])
        learnt = jobs.store.wakeups.counts()
        jobs.store.redis.close()
    ends: dict[str, float] = {}
    statuses: dict[str, int] = {}
    per_job: list[int] = []
    retrieves = counters.get("retrieves_per_object", {})
    created = counters.get("responses_per_job", {})
    for ref, record in zip(refs, records, strict=True):
        end = reader.ended.get(ref.id)
        status = end[2] if end else (record.status.value if record else "missing")
        statuses[status] = statuses.get(status, 0) + 1
        if record is None:
            continue
        response_id = record.remote.get("response_id")
        conversation = 1 if record.remote.get("conversation_created") else 0
        per_job.append(conversation + created.get(ref.id, 0) + retrieves.get(str(response_id), 0))
        if end and response_id:
            ends[str(response_id)] = end[0]
    cpu = sum(s.cpu_s for s in samplers)
    row = summarise(label, jobs_n, submitted_at, wall, ends, truth, counters, per_job, statuses)
    row.update(
        cpu_s=round(cpu, 2),
        cpu_ms_per_job=round(1000 * cpu / jobs_n, 2),
        cpu_ms_per_job_receiver=round(1000 * samplers[-1].cpu_s / jobs_n, 2) if receiver else None,
        redis_cpu_ms_per_job=round(1000 * redis_cpu / jobs_n, 2),
        peak_rss_mb=round(sum(s.peak_rss for s in samplers) / 2**20, 1),
        ended_by=learnt,
        webhook_deliveries=hooks,
        settings={"webhooks": webhooks, "webhook_drop": drop, "safety_poll_s": SAFETY_POLL_S},
    )
    return row


def seed(profile: dict[str, Any], jobs_n: int, workdir: Path) -> dict[str, Any]:
    """The seed pattern for responses in its own process, a thread per job up to `SEED_THREAD_CAP`."""
    threads = min(jobs_n, SEED_THREAD_CAP)
    with emulator(profile) as (base_url, admin):
        admin.reset_counters()
        out = workdir / f"seed-responses-{jobs_n}.json"
        cmd = [sys.executable, "-m", "bench.seed_responses", "--base-url", base_url, "--api-key", API_KEY]
        cmd += ["--jobs", str(jobs_n), "--threads", str(threads), "--out", str(out)]
        submitted_at, began = time.time(), time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), preexec_fn=pin_to(contender_cores()))
        notes = [f"threads capped at {threads:,} for {jobs_n:,} jobs"] if threads < jobs_n else []
        with TreeSampler(proc.pid) as sampler:
            try:
                proc.wait(60 + 120 + jobs_n / 10)
            except subprocess.TimeoutExpired:
                notes.append("stopped at its timeout")
                stop(proc)
        wall = time.monotonic() - began
        counters = admin.counters()
        truth = {row["id"]: row for row in admin.responses()}
    body = json.loads(out.read_text()) if out.exists() else {"runs": [], "error_count": jobs_n}
    statuses: dict[str, int] = {}
    ends: dict[str, float] = {}
    retrieves = counters.get("retrieves_per_object", {})
    per_job = []
    for row in body["runs"]:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        ends[row["response_id"]] = row["end"]
        per_job.append(1 + retrieves.get(row["response_id"], 0))
    if body.get("error_count"):
        statuses["error"] = body["error_count"]
        notes.append(f"errors: {body.get('errors', [])[:3]}")
    result = summarise("seed", jobs_n, submitted_at, wall, ends, truth, counters, per_job, statuses)
    result.update(
        cpu_s=round(sampler.cpu_s, 2),
        cpu_ms_per_job=round(1000 * sampler.cpu_s / jobs_n, 2),
        peak_rss_mb=round(sampler.peak_rss / 2**20, 1),
        settings={"threads": threads, "poll_s": 1.0},
        notes=notes,
    )
    return result


def summarise(
    label: str,
    jobs_n: int,
    submitted_at: float,
    wall: float,
    ends: dict[str, float],
    truth: dict[str, dict[str, Any]],
    counters: dict[str, Any],
    per_job: list[int],
    statuses: dict[str, int],
) -> dict[str, Any]:
    """The figures every contender reports: lag, in flight, starts, requests per job, ends."""
    lags = [
        end - truth[rid]["completed_at_precise"]
        for rid, end in ends.items()
        if rid in truth and truth[rid].get("completed_at_precise")
    ]
    created = sorted(row["created_at_precise"] - submitted_at for row in truth.values())
    requests: dict[str, int] = counters.get("requests", {})
    per_job.sort()
    return {
        "label": label,
        "jobs": jobs_n,
        "statuses": statuses,
        "lost": jobs_n - sum(v for k, v in statuses.items() if k in ("completed", "failed", "cancelled")),
        "lag_s": percentiles(lags),
        "lag_max_s": round(max(lags, default=0.0), 3),
        "peak_in_flight": peak_in_flight(truth.values()),
        "all_created_within_s": round(created[-1], 2) if created else None,
        "starts_per_s": round(len(created) / created[-1], 1) if created and created[-1] > 0 else None,
        "requests_per_job": round(sum(requests.values()) / jobs_n, 2),
        "requests_per_job_p99": percentiles(per_job, (99,))["p99"],
        "requests_per_job_max": per_job[-1] if per_job else None,
        "requests": requests,
        "wall_s": round(wall, 1),
    }


def run(mode: str, only: list[str], out: Path, command: str) -> dict[str, Any]:
    """Run the contenders asked for at ``mode``'s sizes and write ``out/s5_webhooks.json`` (rows of an
    earlier run that were not run again are kept)."""
    profile = TINY_PROFILE if mode == "tiny" else PROFILE
    workdir = trial_dir()
    path = out / "s5_webhooks.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    rows = {r["label"]: r for r in previous.get("rows", []) if previous.get("mode") == mode}
    for name in only:
        size = PLANS[mode][name]
        load = [round(x, 2) for x in os.getloadavg()]
        say(f"S5 {name} {size:,}: starting (load {load})")
        if name == "seed":
            row = seed(profile, size, workdir)
        else:
            webhooks = name != "polling"
            row = ours(profile, size, webhooks, DROP if name == "drop" else 0.0, workdir, name)
        row.update(load_avg_at_start=load, command=command, pinning=_pinning())
        say(
            f"S5 {name}: p95 lag {row['lag_s']['p95']} s, peak in flight {row['peak_in_flight']:,}, "
            f"{row['requests_per_job']} requests/job (p99 {row['requests_per_job_p99']}), "
            f"{row['cpu_ms_per_job']} CPU-ms/job, lost {row['lost']}"
        )
        rows[name] = row
    result = {
        "scenario": "s5_webhooks",
        "mode": mode,
        "emulator": {"profile": profile, "webhook_drop": DROP},
        "rows": [rows[k] for k in ("webhooks", "drop", "polling", "seed") if k in rows],
    }
    write_result(out, "s5_webhooks", result)
    return result


GOALS = {"peak": 9000, "lag_p95": 0.25, "requests": 3.5, "requests_p99": 5, "cpu_ms": 6.0}
"""The issue's goals for the webhook run."""


def section(result: dict[str, Any]) -> list[str]:
    """The RESULTS.md section: a row per contender, the ratios, the goals."""
    rows = {r["label"]: r for r in result["rows"]}
    lines = [
        "## S5 webhook-first supervision (bench/s5_webhooks.py)",
        "",
        f"Emulator profile: `{json.dumps(result['emulator']['profile'])}`; `drop`: the emulator drops"
        f" {result['emulator']['webhook_drop']:.0%} of webhook deliveries. *Lag* = the job's end event"
        " (seed: its thread seeing the end) minus the emulator's `completed_at`. Requests per job:"
        " conversation create, response creates and that job's retrieves (safety polls included); CPU: the"
        " worker's process tree and the receiver (Redis's own beside it).",
        "",
        "| row | jobs | lag p50 / p95 / p99 (s) | peak in flight | all created within (s) | starts/s "
        "| requests / job (p99) | CPU ms / job (receiver) | Redis CPU ms / job | ended by | lost "
        "| load at start |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows.values():
        lag = r["lag_s"]
        lines.append(
            f"| {r['label']} | {r['jobs']:,} | {lag['p50']:.3f} / {lag['p95']:.3f} / {lag['p99']:.3f} "
            f"| {r['peak_in_flight']:,} | {r['all_created_within_s']} | {r['starts_per_s']} "
            f"| {r['requests_per_job']} ({r['requests_per_job_p99']}) | {r['cpu_ms_per_job']} "
            f"({r.get('cpu_ms_per_job_receiver') or '-'}) | {r.get('redis_cpu_ms_per_job', '-')} "
            f"| {r.get('ended_by') or '-'} | {r['lost']} | {r['load_avg_at_start']} |"
        )
    lines += ["", "Commands and pinning: " + "; ".join(
        f"{r['label']}: `{r['command']}` ({r['pinning']})" for r in rows.values()
    ) + ".", ""]  # fmt: skip
    ours = rows.get("webhooks")
    if ours:
        for other in ("polling", "seed"):
            if other in rows:
                o = rows[other]
                lag = ours["lag_s"]["p95"] / o["lag_s"]["p95"]
                lines.append(
                    f"- webhooks / {other} ({o['jobs']:,} jobs): lag p95 x{lag:.2f}, "
                    f"requests per job x{ours['requests_per_job'] / o['requests_per_job']:.2f}, "
                    f"CPU per job x{ours['cpu_ms_per_job'] / o['cpu_ms_per_job']:.2f}"
                )
        checks = [
            ("peak in flight >= 9,000", ours["peak_in_flight"] >= GOALS["peak"], ours["peak_in_flight"]),
            ("p95 lag <= 0.25 s", ours["lag_s"]["p95"] <= GOALS["lag_p95"], ours["lag_s"]["p95"]),
            ("requests per job <= 3.5", ours["requests_per_job"] <= GOALS["requests"],
             ours["requests_per_job"]),
            ("requests per job p99 <= 5", ours["requests_per_job_p99"] <= GOALS["requests_p99"],
             ours["requests_per_job_p99"]),
            ("CPU per job <= 6 ms", ours["cpu_ms_per_job"] <= GOALS["cpu_ms"], ours["cpu_ms_per_job"]),
            ("none lost", ours["lost"] == 0, ours["lost"]),
        ]  # fmt: skip
        drop = rows.get("drop")
        if drop:
            safety = drop.get("settings", {}).get("safety_poll_s", SAFETY_POLL_S)
            checks += [
                ("10% dropped: none stuck", drop["lost"] == 0, drop["lost"]),
                (f"10% dropped: p95 within the safety period ({safety:g} s)", drop["lag_s"]["p95"] <= safety,
                 drop["lag_s"]["p95"]),
            ]  # fmt: skip
        lines += ["", "| goal | measured | reached |", "|---|---:|---|"]
        lines += [f"| {goal} | {value} | {'yes' if ok else 'no'} |" for goal, ok, value in checks]
    return [*lines, ""]


def _pinning() -> str:
    shared = "both cores (sharing the emulator's)" if SHARING["cores"] else "core 1"
    return f"emulator on core 0; Redis, the worker, the receiver, the seed pattern and the reader on {shared}"


def main(mode: str, out: Path, command: str) -> dict[str, Any]:
    """The runner's entry: every contender at ``mode``'s sizes."""
    return run(mode, ["webhooks", "drop", "polling", "seed"], out, command)


def cli(argv: list[str] | None = None) -> None:
    """``python -m bench.s5_webhooks``."""
    parser = argparse.ArgumentParser(prog="python -m bench.s5_webhooks", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group(required=True)
    for name in ("tiny", "quick", "full"):
        size.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    parser.add_argument("--only", default="webhooks,drop,polling,seed")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--share-cores", action="store_true", help="the contender may use the emulator's core too"
    )
    args = parser.parse_args(argv)
    if args.share_cores:
        share_cores()
    os.sched_setaffinity(0, contender_cores())
    command = "python -m bench.s5_webhooks " + shlex.join(sys.argv[1:] if argv is None else argv)
    run(args.mode, [s.strip() for s in args.only.split(",") if s.strip()], args.out, command)
    if args.out.resolve() == RESULTS_DIR.resolve():
        from bench import report

        say(f"report written: {report.write(args.out, RESULTS_DIR.parent / 'RESULTS.md')}")


if __name__ == "__main__":
    cli()
