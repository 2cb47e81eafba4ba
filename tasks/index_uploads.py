"""Local files into the Files API for an indexing job.

Every path is checked before anything is uploaded. Uploads then run a chunk at a time (what fits in
half a task's soft time limit) with bounded concurrency, and each ``path -> file id`` lands in the Redis
hash ``aj:uploads:{job_id}`` the moment its upload returns: one HSET per file is far cheaper than a
compare-and-set of the job record per file, and a retried task reads the hash and uploads only the rest.

The one gap a hash cannot close is a worker killed while uploads are in flight: the server may have
stored a file whose id never came back. So each upload first notes its path in
``aj:uploading:{job_id}``; a later chunk that finds notes left behind lists the recent files and adopts
the one with that name and size that no job has recorded, instead of uploading it a second time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import openai

from schemas.job import JobError
from worker.errors import classify
from worker.store.inventory import Inventory
from worker.store.uploads import Uploads

log = logging.getLogger(__name__)

ADOPT_SLACK_S = 5
"""Seconds before the oldest pending upload's note from which orphan files are looked for (clock skew)."""
PROGRESS_EVERY_S = 0.5
"""Least seconds between two upload progress reports of a chunk (the last upload is always reported)."""

Progress = Callable[[int, int], None]
"""Reports ``(files uploaded so far, files to upload in all)``."""


# --- checks (the rules and the look at the disk are worker.paths', shared with producers) ---------
def bad_paths_error(bad: Sequence[tuple[str, str]], total: int) -> JobError:
    """One error naming each bad path and why; nothing was uploaded."""
    lines = "; ".join(f"{path}: {why}" for path, why in bad)
    message = f"{len(bad)} of {total} paths cannot be indexed, so nothing was uploaded: {lines}"
    return JobError(code="bad_paths", message=message)


# --- uploading --------------------------------------------------------------------------------
@dataclass
class Chunk:
    """What one chunk of uploads did."""

    uploaded: int = 0
    adopted: int = 0
    remaining: int = 0
    """Paths still without a file id (time ran out, or a retryable error)."""
    retry_error: JobError | None = None
    """The last retryable error, when some upload should be tried again after a backoff."""
    error: JobError | None = None
    """A permanent error: the job cannot go on."""
    errors: list[str] = field(default_factory=list)


@dataclass
class _Throttled:
    """Passes upload counts on to a `Progress`, at most every `PROGRESS_EVERY_S` and always the last."""

    progress: Progress | None
    before: int
    total: int
    _at: float = 0.0

    def __call__(self, uploaded: int, last: bool) -> None:
        now = time.monotonic()
        if self.progress is None or not uploaded or (not last and now - self._at < PROGRESS_EVERY_S):
            return
        self._at = now
        self.progress(self.before + uploaded, self.total)


@dataclass
class Uploader:
    """Uploads one job's paths with the sync SDK client, recording each in Redis as it returns."""

    client: openai.OpenAI
    uploads: Uploads
    inventory: Inventory
    job_id: str
    concurrency: int
    request_timeout: float
    progress: Progress | None = None
    """Told how many files are uploaded as uploads return (at most every `PROGRESS_EVERY_S`)."""

    def run(self, paths: Sequence[str], budget_s: float) -> Chunk:
        """Upload the paths not yet recorded until ``budget_s`` seconds have passed (in-flight
        uploads are always waited for); safe to run again after any failure."""
        chunk = Chunk(adopted=self.adopt_orphans(paths))
        done = self.uploads.recorded(self.job_id)
        todo = [p for p in paths if p not in done]
        report = _Throttled(self.progress, len(paths) - len(todo), len(paths))
        until = time.monotonic() + budget_s
        pending: set[Future[str]] = set()
        by_future: dict[Future[str], str] = {}
        queue = iter(todo)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="aj-upload") as pool:
            while True:
                while len(pending) < self.concurrency and time.monotonic() < until and chunk.error is None:
                    path = next(queue, None)
                    if path is None:
                        break
                    future = pool.submit(self.upload, path)
                    pending.add(future)
                    by_future[future] = path
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._settle(chunk, by_future.pop(future), future)
                report(chunk.uploaded, last=not pending)
        chunk.remaining = len(paths) - len(self.uploads.recorded(self.job_id))
        return chunk

    def _settle(self, chunk: Chunk, path: str, future: Future[str]) -> None:
        exc = future.exception()
        if exc is None:
            chunk.uploaded += 1
            return
        if isinstance(exc, OSError):
            chunk.error = JobError(code="bad_paths", message=f"{path}: could not be read ({exc})")
            return
        error = classify(exc)
        if error.retryable:
            chunk.retry_error = error
            return
        chunk.error = error.model_copy(update={"message": f"uploading {path}: {error.message}"})

    def upload(self, path: str) -> str:
        """Upload one path and record its file id (and the file in the inventory); the file id."""
        self.uploads.begin(self.job_id, path)
        try:
            with open(path, "rb") as handle:
                file = self.client.files.create(
                    file=(os.path.basename(path), handle), purpose="assistants", timeout=self.request_timeout
                )
        except (openai.APIStatusError, OSError):
            # The server answered, or the file could not be read: nothing was stored to adopt later.
            self.uploads.abandon(self.job_id, path)
            raise
        self.uploads.record(self.job_id, {path: file.id})
        return file.id

    def adopt_orphans(self, paths: Sequence[str]) -> int:
        """Record files a killed worker uploaded but never recorded; how many were adopted.

        Looks only when a killed task left upload notes behind. A candidate is a file created since the
        oldest note with the note's file name and size that no job has recorded in the inventory.
        """
        ours = set(paths)
        notes = {path: at for path, at in self.uploads.notes(self.job_id).items() if path in ours}
        if not notes:
            self.uploads.clear_notes(self.job_id)
            return 0
        wanted: dict[tuple[str, int], list[str]] = {}
        for path in notes:
            try:
                wanted.setdefault((os.path.basename(path), os.path.getsize(path)), []).append(path)
            except OSError:
                continue
        since = min(notes.values()) - ADOPT_SLACK_S
        candidates: list[tuple[str, tuple[str, int]]] = []
        for file in self.client.files.list(purpose="assistants", order="desc", limit=1000):
            if file.created_at < since:
                break
            if (file.filename, file.bytes) in wanted:
                candidates.append((file.id, (file.filename, file.bytes)))
        adopted: dict[str, str] = {}
        if candidates:
            known = self.inventory.known_files([file_id for file_id, _ in candidates])
            for (file_id, key), seen in zip(candidates, known, strict=True):
                if not seen and wanted[key]:
                    adopted[wanted[key].pop(0)] = file_id
        if adopted:
            self.uploads.record(self.job_id, adopted)
        log.info(
            "job %s: %d uploads interrupted, %d found stored and adopted",
            self.job_id,
            len(notes),
            len(adopted),
        )
        self.uploads.clear_notes(self.job_id)
        return len(adopted)
