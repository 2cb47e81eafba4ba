"""What every ``ajobs`` command shares: how it prints, the one error a command stops with (`Failure`), the
producer client (built once, closed at exit), and waiting for a job's end."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from schemas.job import JobKind, JobRecord, JobStatus
from worker.problems import ExitCode

if TYPE_CHECKING:
    from worker.client import Jobs

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
"""``-h`` as well as ``--help``, on every command."""


class Failure(Exception):
    """A command stops: ``message`` for the person, ``code`` for the shell."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.code = code


# --- output ---------------------------------------------------------------------------------------
def say(text: str = "") -> None:
    """A line for the person (stdout)."""
    click.echo(text)


def warn(text: str) -> None:
    """A line on stderr."""
    click.echo(text, err=True)


def emit_json(value: Any) -> None:
    """JSON on stdout."""
    click.echo(json.dumps(value, indent=2))


def _width() -> int | None:
    # Only a terminal has a width to fit; piped output is never cut.
    return shutil.get_terminal_size().columns if sys.stdout.isatty() or "COLUMNS" in os.environ else None


def show_record(record: JobRecord, as_json: bool) -> None:
    """A record: labelled lines, or its JSON as stored."""
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return
    from worker.display import record_rows, render_rows

    say(render_rows(record_rows(record)))


def show_table(records: Sequence[JobRecord], as_json: bool) -> None:
    """Records as a table (ids whole), or a JSON list."""
    if as_json:
        emit_json([r.model_dump(mode="json") for r in records])
        return
    from worker.display import job_table

    say(job_table(records, _width()) if records else "no jobs")


def end_code(record: JobRecord) -> ExitCode:
    """0 for a job completed (or still live: nothing went wrong), 1 for one that ended badly."""
    if record.status == JobStatus.COMPLETED or not record.status.ended:
        return ExitCode.OK
    return ExitCode.JOB_FAILED


# --- the client -----------------------------------------------------------------------------------
STATE: dict[str, Any] = {}
"""The client of this command, and the upload bar, once made."""


def jobs(check_paths: bool = True) -> Jobs:
    """The producer client (built once per command; Celery only if the command publishes)."""
    if "jobs" not in STATE:
        from worker.client import Jobs

        STATE["jobs"] = Jobs(check_paths=check_paths)
    client: Jobs = STATE["jobs"]
    return client


# --- waiting --------------------------------------------------------------------------------------
def wait_for(job_id: str, timeout: float | None, as_json: bool) -> NoReturn:
    """Wait for the job (a progress bar for indexing jobs), show it, and exit with its end's code; past
    ``timeout``, say whether any worker consumes its queues and exit 4."""
    client = jobs()
    record = client.get(job_id)
    if as_json or record.status.ended or record.kind != JobKind.INDEX or not sys.stderr.isatty():
        record = client.wait(job_id, timeout)
    else:
        from worker.progress import follow_progress

        record = follow_progress(client, job_id, timeout)
    show_record(record, as_json)
    if not record.status.ended:
        raise Failure(_still_live(client, record, timeout), ExitCode.TIMED_OUT)
    raise SystemExit(end_code(record))


def _still_live(client: Jobs, record: JobRecord, timeout: float | None) -> str:
    from worker.consumers import consumers, describe
    from worker.producer import queues_of

    head = f"job {record.id} is still {record.status.value} after {timeout:g} s"
    try:
        found = consumers(client.celery, queues_of(record.kind, client.settings))
    except Exception as exc:
        from worker.problems import explain

        problem = explain(exc, client.settings)
        return f"{head}; could not ask the workers: {problem.message if problem else exc}"
    return f"{head}; {describe(found)}; the job goes on"


def pairs(values: Sequence[str], option: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise Failure(f"{option} takes KEY=VALUE, got {item!r}")
        result[key] = value
    return result
