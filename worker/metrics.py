"""Prometheus metrics: workers count their API requests into Redis; ``ajobs metrics`` serves everything.

Why a standalone exporter reading Redis, rather than an endpoint in each worker: the job, poll and
inventory figures are cluster state that lives in Redis anyway, so one exporter gives one scrape target
however many workers and hosts there are, and it survives worker restarts; and a prefork worker's pool
processes would each hold their own in-memory counters, which Prometheus' client can only merge through
its multiprocess mode and a shared directory per host. What only a worker knows, its API requests,
it adds to a Redis hash every couple of seconds (one pipelined HINCRBY per endpoint and outcome).

Metric names (all prefixed ``aj_``) are listed in the README's Operations section and on `JobsCollector`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx2
import redis
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from schemas.job import JobEvent, JobStatus
from worker.settings import Settings
from worker.store import Store
from worker.store.counters import ApiCounters
from worker.store.jobs import JobStore, Timing

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 2.0
"""Seconds between a process's flushes of its API counts to Redis."""

# Ids in paths (thread_..., run_..., vs_..., file-..., conv_..., resp_..., asst_...) become {id}, so the
# endpoint label has a handful of values rather than one per object. Resource and action names
# (vector_stores, submit_tool_outputs) look alike but never hold a digit; generated ids always do.
_ID = re.compile(r"^(?:[a-z]+_|file-)[A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*$")


def endpoint(method: str, path: str) -> str:
    """``POST /threads/{id}/runs`` from a request's method and URL path (the ``/v1`` prefix dropped)."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "v1":
        parts = parts[1:]
    return f"{method.upper()} /" + "/".join("{id}" if _ID.match(p) else p for p in parts)


def outcome(status: int) -> str:
    """The class of an HTTP status: ok, not_found, rate_limited, client_error or server_error."""
    if status < 400:
        return "ok"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    return "client_error" if status < 500 else "server_error"


class ApiCounts:
    """This process's API request counts, added to Redis every `FLUSH_EVERY_S` by a daemon thread."""

    def __init__(self, counters: ApiCounters):
        self.counters = counters
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        """Held by a flush from taking the counts to having written them: a flush waits for one under way."""
        self._pid = 0

    def add(self, method: str, path: str, result: str) -> None:
        """Count one request to ``method path`` that ended in ``result``."""
        with self._lock:
            self._counts[f"{endpoint(method, path)}|{result}"] += 1
            if self._pid != os.getpid():  # first count in this (possibly forked) process
                self._pid = os.getpid()
                threading.Thread(target=self._flush_forever, name="aj-metrics", daemon=True).start()

    def flush(self) -> None:
        """Add the counts so far to Redis and start again from zero. Returns once they are written (or kept
        for the next flush), those of the daemon's flush under way included: a process that flushes as it
        stops loses none of them."""
        with self._sending:
            with self._lock:
                counts, self._counts = self._counts, Counter()
            if not counts:
                return
            try:
                self.counters.add(counts)
            # A Redis error, or a connection another thread closed under this one (redis-py then raises
            # ValueError or OSError from the socket): either way the counts wait for the next flush.
            except (redis.RedisError, OSError, ValueError):
                with self._lock:
                    self._counts.update(counts)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            try:
                self.flush()
            except Exception:  # the thread lives on: a dead one would drop every later count unseen
                log.exception("writing the API request counts failed")


class CountingTransport(httpx2.BaseTransport):
    """Counts every request the SDK client sends, by endpoint and outcome, connection errors and
    timeouts included (they never reach a response hook). Wraps the client's real transport."""

    def __init__(self, inner: httpx2.BaseTransport, counts: ApiCounts):
        self.inner = inner
        self.counts = counts

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` through the real transport and count how it ended."""
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            result = "timeout" if isinstance(exc, httpx2.TimeoutException) else "connection"
            self.counts.add(request.method, request.url.path, result)
            raise
        self.counts.add(request.method, request.url.path, outcome(response.status_code))
        return response

    def close(self) -> None:
        """Close the real transport."""
        self.inner.close()


# --- the exporter ----------------------------------------------------------------------------------
DURATION_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
"""Seconds from submit to end: runs take seconds to minutes, indexing and clean-ups up to hours."""
QUEUE_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Seconds from submit to a worker starting the job."""


class JobTimings:
    """The duration histograms, observed once per job as it ends (from its record's times).

    - ``aj_job_duration_seconds{kind,backend}``: submit to end (histogram).
    - ``aj_job_queue_wait_seconds{kind}``: submit to a worker starting it (histogram; jobs that never
      started, cancelled while queued, are not observed).
    """

    def __init__(self, registry: CollectorRegistry):
        self.duration = Histogram(
            "aj_job_duration_seconds",
            "Seconds from submit to end, per kind and run backend.",
            ["kind", "backend"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "aj_job_queue_wait_seconds",
            "Seconds from submit to a worker starting the job, per kind.",
            ["kind"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )

    def observe(self, timings: Iterator[Timing | None] | list[Timing | None]) -> None:
        """Observe jobs that ended."""
        for timing in timings:
            if timing is None or timing.finished_at is None:
                continue
            backend = timing.backend or "none"
            self.duration.labels(timing.kind, backend).observe(max(timing.finished_at - timing.created_at, 0))
            if timing.started_at is not None:
                self.queue_wait.labels(timing.kind).observe(max(timing.started_at - timing.created_at, 0))


def _enters_status(event: JobEvent) -> bool:
    expected = "job.started" if event.status == JobStatus.RUNNING else f"job.{event.status.value}"
    return event.type == expected


class EventTally:
    """Counts job status changes by kind from the event stream, from the moment it starts, and feeds the
    duration histograms with the jobs that end."""

    def __init__(self, jobs: JobStore, timings: JobTimings | None = None):
        self.jobs = jobs
        self.timings = timings
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Follow the stream in a daemon thread."""
        threading.Thread(target=self._follow, name="aj-events", daemon=True).start()

    def snapshot(self) -> dict[tuple[str, str], int]:
        """``(kind, status) -> count`` so far."""
        with self._lock:
            return dict(self.counts)

    def take(self, events: list[JobEvent]) -> None:
        """Count ``events``, and observe the times of the jobs they end (one read for all of them)."""
        ended = []
        with self._lock:
            for event in events:
                if not _enters_status(event):  # progress, re-drives, warnings
                    continue
                self.counts[(event.kind.value, event.status.value)] += 1
                if event.status.ended:
                    ended.append(event.job_id)
        if ended and self.timings is not None:
            self.timings.observe(self.jobs.timings(ended))

    def _follow(self) -> None:
        last = "$"
        while True:
            try:
                events = self.jobs.events(last, block_ms=5000, count=1000)
                if events:
                    last = events[-1].stream_id
                self.take(events)
            except redis.RedisError:
                time.sleep(1.0)


class JobsCollector(Collector):
    """Reads Redis at each scrape.

    - ``aj_jobs{status}``: jobs held in Redis per status (gauge).
    - ``aj_job_status_changes_total{kind,status}``: jobs of each kind entering each status (counter).
    - ``aj_runs_in_flight``: run jobs a poller supervises now (gauge).
    - ``aj_polls_scheduled`` and ``aj_polls_due``: polls waiting, and those already due (gauges).
    - ``aj_poll_lag_seconds``: how late the most overdue unclaimed poll is (gauge).
    - ``aj_api_requests_total{endpoint,outcome}``: API requests workers made, by outcome (counter).
    - ``aj_api_errors_total{class}``: the failed ones by class (counter).
    - ``aj_dead_letters``: jobs in the dead-letter set (gauge).
    - ``aj_quarantined_messages``: malformed broker messages set aside in the quarantine list (gauge).
    - ``aj_inventory_objects{kind}``: threads, conversations, stores and files recorded (gauge).
    """

    def __init__(self, store: Store, events: EventTally | None = None):
        self.store = store
        self.events = events

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """One scrape's metrics."""
        census = self.store.census()
        jobs = GaugeMetricFamily("aj_jobs", "Jobs held in Redis, per status.", labels=["status"])
        for status, count in census.jobs.items():
            jobs.add_metric([status.value], count)
        yield jobs
        if self.events is not None:
            changes = CounterMetricFamily(
                "aj_job_status_changes", "Jobs of each kind entering each status.", labels=["kind", "status"]
            )
            for (kind, entered), count in sorted(self.events.snapshot().items()):
                changes.add_metric([kind, entered], count)
            yield changes
        yield GaugeMetricFamily(
            "aj_runs_in_flight", "Run jobs a poller supervises now.", value=census.runs_in_flight
        )
        yield GaugeMetricFamily(
            "aj_polls_scheduled", "Polls waiting in the schedule.", value=census.scheduled
        )
        yield GaugeMetricFamily("aj_polls_due", "Polls already due and not yet claimed.", value=census.due)
        yield GaugeMetricFamily(
            "aj_poll_lag_seconds", "How late the most overdue unclaimed poll is.", value=census.lag
        )
        yield from _api_metrics(census.api)
        yield GaugeMetricFamily("aj_dead_letters", "Jobs in the dead-letter set.", value=census.dead)
        yield GaugeMetricFamily(
            "aj_quarantined_messages",
            "Malformed broker messages workers set aside in the quarantine list (it keeps the newest 1,000).",
            value=census.quarantined,
        )
        objects = GaugeMetricFamily(
            "aj_inventory_objects", "Objects recorded for the clean-up.", labels=["kind"]
        )
        for kind, count in census.inventory.items():
            objects.add_metric([kind], count)
        yield objects


def _api_metrics(api: dict[str, int]) -> Iterator[CounterMetricFamily]:
    requests = CounterMetricFamily(
        "aj_api_requests",
        "API requests workers made, by endpoint and outcome.",
        labels=["endpoint", "outcome"],
    )
    errors = CounterMetricFamily("aj_api_errors", "Failed API requests, by class.", labels=["class"])
    by_class: Counter[str] = Counter()
    for field, value in sorted(api.items()):
        name, _, result = field.rpartition("|")
        requests.add_metric([name, result], int(value))
        if result != "ok":
            by_class[result] += int(value)
    for result, count in sorted(by_class.items()):
        errors.add_metric([result], count)
    yield requests
    yield errors


def registry(store: Store, follow_events: bool = True) -> CollectorRegistry:
    """A registry holding our collector and the duration histograms (fed by following the event stream
    when ``follow_events``)."""
    reg = CollectorRegistry()
    events = EventTally(store.jobs, JobTimings(reg)) if follow_events else None
    if events is not None:
        events.start()
    reg.register(JobsCollector(store, events))
    return reg


def serve(settings: Settings, store: Store, port: int | None = None) -> None:
    """Serve ``/metrics`` on the settings' address and port until the process is stopped."""
    start_http_server(port or settings.metrics_port, settings.metrics_address, registry=registry(store))
    threading.Event().wait()


# --- worker hooks ----------------------------------------------------------------------------------
_COUNTS: dict[int, ApiCounts] = {}


def process_counts() -> ApiCounts:
    """This process's `ApiCounts` (a forked pool process gets its own, not its parent's)."""
    pid = os.getpid()
    if pid not in _COUNTS:
        from worker.connections import store

        _COUNTS[pid] = ApiCounts(store().counters)
    return _COUNTS[pid]


def flush_process(**_: Any) -> None:
    """Write this process's last counts before it exits (a Celery signal handler)."""
    counts = _COUNTS.get(os.getpid())
    if counts is not None:
        counts.flush()


def install_worker_hooks() -> None:
    """Write each worker process's last API counts as it stops (counting itself is done by the
    `CountingTransport` every process's openai client is built with)."""
    from celery.signals import worker_process_shutdown, worker_shutdown

    worker_process_shutdown.connect(flush_process, weak=False)
    worker_shutdown.connect(flush_process, weak=False)
