"""The chaos soak's job mix: the remote objects jobs share, one request per job, and the submitter that
spreads them over the submit window through `worker.client.Jobs`.

Every request carries an idempotency key, so a submit cut short by a Redis kill is simply made again: a job
written before the cut comes back as it is instead of twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import redis

from bench.common import say
from emulator.admin_client import EmulatorAdmin
from tasks.assistants import beta
from worker.client import Jobs

WEIGHTS = {
    "run/assistants": 28,
    "run/assistants+tool": 10,
    "run/assistants+thread": 10,
    "run/responses": 24,
    "run/responses+tool": 8,
    "run/responses+conversation": 8,
    "index/file_ids": 8,
    "cleanup/dry_run": 4,
}
"""Share of each variant in the mix (out of 100); the few `index/paths` jobs come out of `index/file_ids`."""

PER_SHARED_THREAD = 10
"""Jobs that queue on each shared thread or conversation (strategy `enqueue`), about."""
FILES_PER_INDEX_JOB = 3
PATHS_PER_INDEX_JOB = 2
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The forecast for a city."}}
FLAT_WEATHER = {"type": "function", "name": "get_weather", "description": "The forecast for a city."}
CLEANUP_TARGETS = (["threads", "conversations"], ["vector_stores", "files"], ["jobs"], None)


@dataclass
class Planned:
    """One job of the mix: its place, its variant and the request to submit."""

    index: int
    variant: str
    request: dict[str, Any]


@dataclass
class Shared:
    """Remote objects made before the soak starts (with no faults): jobs refer to them."""

    assistant_id: str
    threads: list[str]
    conversations: list[str]
    store_id: str
    files: list[str]
    docs: Path


def variants(jobs: int, rng: random.Random) -> list[str]:
    """The variant of each job: drawn from `WEIGHTS`, then a few index jobs turned into path uploads."""
    names = list(WEIGHTS)
    drawn = rng.choices(names, weights=[WEIGHTS[n] for n in names], k=jobs)
    index_jobs = [i for i, v in enumerate(drawn) if v == "index/file_ids"]
    for i in index_jobs[:: max(1, len(index_jobs) // max(2, jobs // 200))][: max(2, jobs // 200)]:
        drawn[i] = "index/paths"
    return drawn


def make_shared(api: openai.OpenAI, admin: EmulatorAdmin, drawn: list[str], docs: Path) -> Shared:
    """Create the assistant, the shared threads and conversations, the files and a vector store, and write
    the local files the path jobs upload (unique names, so duplicate uploads can be counted per file)."""
    counts = Counter(drawn)
    assistant = beta(api).assistants.create(model="gpt-4o", name="chaos", tools=[WEATHER])
    threads = [
        beta(api).threads.create().id
        for _ in range(max(1, -(-counts["run/assistants+thread"] // PER_SHARED_THREAD)))
    ]
    conversations = [
        api.conversations.create().id
        for _ in range(max(1, -(-counts["run/responses+conversation"] // PER_SHARED_THREAD)))
    ]
    store = api.vector_stores.create(name="chaos-shared")
    files = admin.create_files(max(1, counts["index/file_ids"]) * FILES_PER_INDEX_JOB, prefix="chaos")
    docs.mkdir(parents=True, exist_ok=True)
    for i, variant in enumerate(drawn):
        if variant == "index/paths":
            for k in range(PATHS_PER_INDEX_JOB):
                (docs / f"chaos-{i}-{k}.txt").write_text(
                    f"Document {k} of job {i}.\nThe warranty lasts {i} days.\n"
                )
    return Shared(assistant.id, threads, conversations, store.id, files, docs)


def plan(drawn: list[str], shared: Shared, seed: int) -> list[Planned]:
    """The request of every job, in submission order."""
    planned = []
    files = iter(shared.files)
    for i, variant in enumerate(drawn):
        request = _request(i, variant, shared, files)
        request["idempotency_key"] = f"chaos-{seed}-{i}"
        planned.append(Planned(i, variant, request))
    return planned


def _request(i: int, variant: str, shared: Shared, files: Any) -> dict[str, Any]:
    kind, _, what = variant.partition("/")
    if kind == "run":
        return _run_request(i, what, shared)
    if variant == "index/file_ids":
        target: dict[str, Any] = (
            {"new_store": {"name": f"chaos-{i}"}} if i % 2 else {"vector_store_id": shared.store_id}
        )
        return {"kind": "index", **target, "file_ids": [next(files) for _ in range(FILES_PER_INDEX_JOB)]}
    if variant == "index/paths":
        paths = [str(shared.docs / f"chaos-{i}-{k}.txt") for k in range(PATHS_PER_INDEX_JOB)]
        return {"kind": "index", "new_store": {"name": f"chaos-paths-{i}"}, "paths": paths}
    targets = CLEANUP_TARGETS[i % len(CLEANUP_TARGETS)]
    return {"kind": "cleanup", "dry_run": True, **({"targets": targets} if targets else {})}


def _run_request(i: int, what: str, shared: Shared) -> dict[str, Any]:
    backend, _, extra = what.partition("+")
    # Every tool job, and every third job on a shared thread or conversation, asks for get_weather.
    tool = extra == "tool" or (extra in ("thread", "conversation") and i % 3 == 0)
    question = (
        f"Question {i}: what does get_weather say for Paris?" if tool else f"Question {i}: capital of France?"
    )
    request: dict[str, Any] = {
        "kind": "run",
        "backend": backend,
        "messages": [{"role": "user", "content": question}],
    }
    if backend == "assistants":
        request["assistant_id"] = shared.assistant_id
        if extra == "thread":
            request["thread_id"] = shared.threads[i % len(shared.threads)]
    else:
        request["model"] = "gpt-4o"
        if tool:
            request["tools"] = [FLAT_WEATHER]
        if extra == "conversation":
            request["conversation_id"] = shared.conversations[i % len(shared.conversations)]
    return request


@dataclass
class Submitted:
    """A job the submitter got an id for."""

    job_id: str
    index: int
    variant: str
    at: float


class Submitter(threading.Thread):
    """Submits the planned jobs evenly over `over_s` seconds, in one `submit_many` call a second; a call that
    fails (Redis killed under it) is made again after half a second with the same requests."""

    def __init__(self, jobs: Jobs, planned: list[Planned], over_s: float):
        super().__init__(name="chaos-submit", daemon=True)
        self.jobs = jobs
        self.planned = planned
        self.over_s = over_s
        self.submitted: dict[str, Submitted] = {}
        self.failed_calls: list[tuple[float, str]] = []
        """(when, error) of each submit call that failed."""
        self.again: int = 0
        """Jobs a repeated call found already written (created by the call that failed)."""
        self.began = 0.0
        self.finished_at: float | None = None

    def run(self) -> None:
        self.began = time.time()
        step = self.over_s / max(1, len(self.planned))
        sent = 0
        while sent < len(self.planned):
            due = min(len(self.planned), int((time.time() - self.began) / step) + 1)
            batch = self.planned[sent:due]
            if batch:
                self._submit(batch)
                sent = due
            time.sleep(min(1.0, max(0.0, self.began + due * step - time.time())))
        self.finished_at = time.time()

    def _submit(self, batch: list[Planned]) -> None:
        retried = False
        while True:
            try:
                refs = self.jobs.submit_many([p.request for p in batch])
                break
            except (redis.RedisError, OSError) as exc:
                self.failed_calls.append((time.time(), f"{type(exc).__name__}: {exc}"))
                if not retried:
                    say(f"chaos: submit of {len(batch)} job(s) failed ({type(exc).__name__}); trying again")
                retried = True
                time.sleep(0.5)
        now = time.time()
        for p, ref in zip(batch, refs, strict=True):
            self.submitted[ref.id] = Submitted(ref.id, p.index, p.variant, now)
            if retried and not ref.created:
                self.again += 1
