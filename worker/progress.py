"""A progress bar for jobs that move many items, fed by the event stream."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.job import JobRecord


def follow_progress(jobs: Any, job_id: str, timeout: float | None) -> JobRecord:
    """Show the job's progress until it ends (or ``timeout`` passes); its record."""
    deadline = None if timeout is None else time.monotonic() + timeout
    record: JobRecord = jobs.get(job_id)
    last = "$"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(job_id, total=None, failed=0)
        while not record.status.ended and (deadline is None or time.monotonic() < deadline):
            if record.progress:
                p = record.progress
                bar.update(task, total=p.total or None, completed=p.completed + p.failed, failed=p.failed)
            for event in jobs.events(last, block_ms=1000):
                last = event.stream_id
            record = jobs.get(job_id)
        if record.progress:
            p = record.progress
            bar.update(task, total=p.total or None, completed=p.completed + p.failed, failed=p.failed)
    return record
