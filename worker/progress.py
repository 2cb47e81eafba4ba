"""Progress bars on stderr: an indexing job followed through the event stream (its uploads, then its
indexing), and a producer's own uploads (upload mode).

Workers announce uploads as ``job.uploaded`` events, ``{"uploaded": n, "total": m}`` (`tasks.index_flow`),
without writing the record; the indexing counts are the record's ``progress``. The bar shows uploads until
the first indexing counts arrive.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from schemas.job import JobEvent, JobRecord
from worker.constants import UPLOADED_EVENT


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def follow_progress(jobs: Any, job_id: str, timeout: float | None) -> JobRecord:
    """Show the job's progress until it ends (or ``timeout`` passes); its record."""
    deadline = None if timeout is None else time.monotonic() + timeout
    record: JobRecord = jobs.get(job_id)
    last = "$"
    with _bar() as bar:
        uploads: TaskID | None = None
        indexing = bar.add_task("indexing", total=None, note="", visible=False)
        while True:
            _show_indexing(bar, indexing, record)
            if record.status.ended or (deadline is not None and time.monotonic() >= deadline):
                break
            block = 1000 if deadline is None else max(int((deadline - time.monotonic()) * 1000), 1)
            for event in jobs.events(last, block_ms=min(block, 1000)):
                last = event.stream_id
                uploads = _show_uploads(bar, uploads, event, job_id)
            record = jobs.get(job_id)
    return record


def _show_uploads(bar: Progress, task: TaskID | None, event: JobEvent, job_id: str) -> TaskID | None:
    if event.job_id != job_id or event.type != UPLOADED_EVENT:
        return task
    total, done = int(event.data.get("total", 0)), int(event.data.get("uploaded", 0))
    if task is None:
        task = bar.add_task("uploading", total=total or None, note="")
    bar.update(task, total=total or None, completed=done)
    return task


def _show_indexing(bar: Progress, task: TaskID, record: JobRecord) -> None:
    p = record.progress
    if p is None:
        return
    bar.update(
        task, visible=True, total=p.total or None, completed=p.completed + p.failed, note=f"{p.failed} failed"
    )


class UploadBar:
    """The bar of a producer's own uploads (upload mode): ``update`` is the upload callback."""

    def __init__(self, total: int):
        self.progress = _bar()
        self.progress.start()
        self.task = self.progress.add_task("uploading", total=total, note="")

    def update(self, done: int, total: int, path: str) -> None:
        """One more file uploaded."""
        self.progress.update(self.task, total=total, completed=done)

    def stop(self) -> None:
        """Leave the bar as it is."""
        self.progress.stop()
