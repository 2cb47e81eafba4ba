"""What the chaos soak watches while it runs, each in a thread of the driver: the event stream (as another
service reads it, through `Jobs.events`), the poll schedule and the load average, and the emulator's faults,
switched between a general set and a set aimed at creates."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from emulator.admin_client import EmulatorAdmin
from worker.client import Jobs
from worker.store import Store

DOWN = (redis.RedisError, OSError)
"""What a Redis call raises while the soak has Redis down."""


@dataclass
class Trail:
    """One job's events as the stream holds them: (at, type, status) in stream order."""

    kind: str
    events: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def ends(self) -> list[tuple[float, str, str]]:
        """Its end events (more than one would mean a job ended twice)."""
        return [e for e in self.events if e[2] in ENDED]


ENDED = {"completed", "failed", "cancelled", "timed_out", "expired"}


class EventLog(threading.Thread):
    """Reads `aj:events` from its start, keeping each job's trail; rides out Redis being down."""

    def __init__(self, jobs: Jobs):
        super().__init__(name="chaos-events", daemon=True)
        self.jobs = jobs
        self.trails: dict[str, Trail] = {}
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.read_errors = 0

    def run(self) -> None:
        last = "0-0"
        while not self.halt.is_set():
            try:
                events = self.jobs.events(last, block_ms=1000, count=2000)
            except DOWN:
                self.read_errors += 1
                time.sleep(0.5)
                continue
            with self.lock:
                for event in events:
                    last = event.stream_id
                    trail = self.trails.setdefault(event.job_id, Trail(event.kind.value))
                    trail.events.append((event.at, event.type, event.status.value))

    def snapshot(self) -> dict[str, Trail]:
        """A copy of the trails so far."""
        with self.lock:
            return {k: Trail(v.kind, list(v.events)) for k, v in self.trails.items()}

    def ended(self, job_ids: set[str]) -> int:
        """How many of ``job_ids`` have an end event."""
        with self.lock:
            return sum(1 for j in job_ids if j in self.trails and self.trails[j].ends)


class Monitor(threading.Thread):
    """Samples, every second, the schedule's size, due entries and lag, the length of each broker queue and
    the machine's load average."""

    def __init__(self, store: Store, queues: list[str], every: float = 1.0):
        super().__init__(name="chaos-monitor", daemon=True)
        self.store = store
        self.queues = queues
        self.every = every
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            sample: dict[str, Any] = {"at": time.time(), "load1": os.getloadavg()[0]}
            try:
                sample.update(
                    lag=self.store.schedule.lag(),
                    due=self.store.schedule.due(),
                    size=self.store.schedule.size(),
                    # Read only: kombu owns these lists (default-priority messages are under the queue name).
                    queues={q: int(self.store.redis.llen(q)) for q in self.queues},
                )
            except DOWN:
                sample["down"] = True
            self.samples.append(sample)

    def peak_queues(self) -> dict[str, int]:
        """The longest each broker queue got."""
        return {
            q: max((s["queues"][q] for s in self.samples if "queues" in s), default=0) for q in self.queues
        }


CREATE_PATHS = [
    "/v1/threads",
    "/v1/threads/{thread_id}/runs",
    "/v1/responses",
    "/v1/conversations",
    "/v1/vector_stores/{vector_store_id}/file_batches",
]
"""POST paths of creates. The emulator matches a path entry as the route template or as a substring of the
path, so "/v1/threads" and "/v1/responses" also take in every other POST below them (submit_tool_outputs,
cancels)."""


@dataclass
class FaultPlan:
    """The general faults (every request) and, for `create_s` of every `cycle_s`, the create faults (POSTs
    on `CREATE_PATHS` only: the general ones plus `rate_drop_after`)."""

    rate_429: float = 0.03
    retry_after_s: float = 1.0
    rate_503: float = 0.04
    rate_drop: float = 0.03
    rate_drop_after: float = 0.15
    cycle_s: float = 20.0
    create_s: float = 5.0

    def general(self, seed: int) -> dict[str, Any]:
        """The faults every request may get."""
        return {
            "rate_429": self.rate_429,
            "retry_after_s": self.retry_after_s,
            "rate_503": self.rate_503,
            "rate_drop": self.rate_drop,
            "seed": seed,
        }

    def creates(self, seed: int) -> dict[str, Any]:
        """The faults of the create window."""
        return {
            **self.general(seed),
            "rate_drop_after": self.rate_drop_after,
            "methods": ["POST"],
            "paths": CREATE_PATHS,
        }


class FaultRotator(threading.Thread):
    """Switches the emulator between the general and the create faults (a new seed each time) until halted,
    then clears them; notes each window."""

    def __init__(self, admin: EmulatorAdmin, plan: FaultPlan, seed: int):
        super().__init__(name="chaos-faults", daemon=True)
        self.admin = admin
        self.plan = plan
        self.seed = seed
        self.windows: list[tuple[float, str]] = []
        """(when, "general" | "creates" | "off") at each switch."""
        self.halt = threading.Event()

    def run(self) -> None:
        plan, n = self.plan, 0
        while not self.halt.is_set():
            n += 1
            self._switch("general", plan.general(self.seed * 1000 + n))
            if self.halt.wait(plan.cycle_s - plan.create_s):
                break
            n += 1
            self._switch("creates", plan.creates(self.seed * 1000 + n))
            self.halt.wait(plan.create_s)
        self.admin.clear_faults()
        self.windows.append((time.time(), "off"))

    def _switch(self, name: str, faults: dict[str, Any]) -> None:
        self.admin.set_faults(**faults)
        self.windows.append((time.time(), name))

    def window_at(self, at: float) -> str:
        """Which faults were in force at ``at``."""
        current = "off"
        for start, name in self.windows:
            if start > at:
                break
            current = name
        return current
