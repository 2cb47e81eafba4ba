"""``ajobs``: submit jobs and follow them from a shell, and start the roles an operator runs.

Exit codes (`worker.problems.ExitCode`, listed in the README): 0 success, 1 the job ended badly, 2 usage
or validation, 3 infrastructure unreachable, 4 timed out waiting, 130 interrupted. Every error is one
line on stderr (a bad request: one line per field), never a traceback, unless it is a bug.

Read commands import only what reading needs (click, the record model, the Redis client): Celery, the
request models and the OpenAI SDK are imported by the commands that use them. What every command shares
is in `worker.cli_base`; the submit commands are `worker.cli_submit`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from schemas.job import JobRecord, JobStatus
from worker import constants as c
from worker.cli_base import (
    CONTEXT,
    STATE,
    Failure,
    emit_json,
    jobs,
    pairs,
    say,
    show_record,
    show_table,
    wait_for,
    warn,
)
from worker.cli_submit import submit
from worker.problems import ExitCode
from worker.settings import ConfigurationError

if TYPE_CHECKING:
    from worker.settings import Settings


# --- commands -------------------------------------------------------------------------------------
@click.group(context_settings=CONTEXT)
@click.version_option(package_name="assistant-jobs", prog_name="ajobs", message="%(prog)s %(version)s")
def cli() -> None:
    """Submit OpenAI jobs and follow them; start the workers, beat, Flower and the metrics exporter.

    Exit codes: 0 success, 1 the job ended badly, 2 usage or validation, 3 Redis, the broker or the API
    unreachable, 4 timed out waiting, 130 interrupted.
    """


cli.add_command(submit)


@cli.command("tool-outputs", context_settings=CONTEXT)
@click.argument("job_id")
@click.option("-o", "--output", "outputs", multiple=True, help="CALL_ID=OUTPUT (repeatable).")
@click.option("--json-file", type=click.File("r"), help="A JSON list of {tool_call_id, output}; - for stdin.")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def tool_outputs(job_id: str, outputs: tuple[str, ...], json_file: Any, as_json: bool) -> None:
    """Answer the tool calls a job waits on (every pending call, once)."""
    given = json.load(json_file) if json_file else []
    given += [{"tool_call_id": k, "output": v} for k, v in pairs(outputs, "--output").items()]
    record = jobs().submit_tool_outputs(job_id, given)
    if as_json:
        show_record(record, True)
    else:
        say(f"sent {len(given)} tool output(s) to {job_id}; it runs on")


@cli.command(context_settings=CONTEXT)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def status(job_id: str, as_json: bool) -> None:
    """Show a job: status, kind, backend, attempts, error, result, remote ids, times."""
    show_record(jobs().get(job_id), as_json)


@cli.command(context_settings=CONTEXT)
@click.argument("job_id")
@click.option("--timeout", type=float, help="Seconds to wait at most (then exit 4, saying why it may wait).")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def wait(job_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a job's end (a progress bar for indexing jobs); exit 1 if it ended badly."""
    wait_for(job_id, timeout, as_json)


@cli.command(context_settings=CONTEXT)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job, and say what that did."""
    client = jobs()
    before = client.get(job_id)
    after = client.cancel(job_id)
    if as_json:
        show_record(after, True)
        return
    say(cancel_outcome(before, after))


def cancel_outcome(before: JobRecord, after: JobRecord) -> str:
    """What a cancel did, for a person."""
    job = after.id
    if before.status.ended:
        return f"{job} had already ended ({before.status.value}): nothing to cancel"
    if before.cancel_requested:
        return (
            f"{job}: a cancel was already asked for; it is {after.status.value} until its remote work stops"
        )
    if after.status == JobStatus.CANCELLED:
        return f"{job} cancelled: it was still queued, so it never reached OpenAI"
    return (
        f"{job}: cancel sent; it was {before.status.value}, its remote work is being cancelled and it ends "
        "cancelled once OpenAI confirms (ajobs wait to follow it)"
    )


@cli.command("list", context_settings=CONTEXT)
@click.option(
    "--status", "status_", type=click.Choice([s.value for s in JobStatus]), help="Only jobs in this status."
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Newest jobs shown."
)
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
def list_jobs(status_: str | None, limit: int, as_json: bool) -> None:
    """List the newest jobs (ids in full)."""
    show_table(jobs().list(JobStatus(status_) if status_ else None, limit), as_json)


@cli.command(context_settings=CONTEXT)
@click.option("--follow", is_flag=True, help="Keep printing new events (Ctrl-C to stop).")
@click.option("--since", help="Stream id to start after (default: the start, or now with --follow).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events(follow: bool, since: str | None, as_json: bool) -> None:
    """Print job events."""
    from worker.display import stamp

    client = jobs()
    last = since or ("$" if follow else None)
    while True:
        batch = client.events(last, block_ms=5000 if follow else None)
        for e in batch:
            last = e.stream_id
            if as_json:
                click.echo(e.model_dump_json())
            else:
                say(f"{stamp(e.at)}  {e.type:<20} {e.job_id} {e.kind.value} {e.status.value}")
        if not follow and not batch:
            return


@cli.group(context_settings=CONTEXT)
def dead() -> None:
    """Jobs that exhausted their retries (dead letters)."""


@dead.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
def dead_list(as_json: bool) -> None:
    """List dead-lettered jobs, newest first."""
    show_table(jobs().dead(), as_json)


@dead.command("retry", context_settings=CONTEXT)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print {id, created} of the new job as JSON.")
def dead_retry(job_id: str, as_json: bool) -> None:
    """Submit a dead-lettered job's request again, as a new job."""
    ref = jobs().retry_dead(job_id)
    if as_json:
        emit_json({"id": ref.id, "created": ref.created, "retried": job_id})
    else:
        say(f"{ref.id} (a new job retrying {job_id})")


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
def schema(name: str | None) -> None:
    """Print the JSON Schemas of the requests (NAME: one of them), for producers in other languages."""
    from schemas.requests import json_schemas

    schemas = json_schemas()
    if name and name not in schemas:
        raise Failure(f"no schema {name!r}; known: {', '.join(schemas)}")
    emit_json(schemas[name] if name else schemas)


# The roles' own options belong to Celery: everything after the command, --help included, goes to it.
_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@cli.command("worker", context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker and its poll loop (options go to celery worker, e.g. --concurrency 4 -Q runs)."""
    _serving(celery=True)
    from worker.launch import run_worker

    sys.exit(run_worker(celery_args))


@cli.command("beat", context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat_command(celery_args: tuple[str, ...]) -> None:
    """Start beat with the redbeat scheduler (any number may run: one fires the sweeps)."""
    _serving(celery=True)
    from worker.launch import run_beat

    sys.exit(run_beat(celery_args))


@cli.command("webhooks", context_settings=CONTEXT)
@click.option("--port", type=int, help="Default: AJ_WEBHOOK_PORT (8780).")
def webhooks_command(port: int | None) -> None:
    """Receive OpenAI's signed webhooks and wake the jobs whose responses ended (AJ_WEBHOOK_SECRET)."""
    _serving(celery=False)
    from worker.settings import get_settings
    from worker.webhooks import serve

    settings = get_settings()
    serve(settings.model_copy(update={"webhook_port": port}) if port else settings)


@cli.command("flower", context_settings=_PASS_THROUGH)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower_command(flower_args: tuple[str, ...]) -> None:
    """Start Flower behind basic auth (AJ_FLOWER_USER and AJ_FLOWER_PASSWORD, or AJ_FLOWER_DEV=1)."""
    _serving(celery=True)
    from worker.launch import run_flower

    sys.exit(run_flower(flower_args))


@cli.command(context_settings=CONTEXT)
@click.option("--port", type=int, help="Default: AJ_METRICS_PORT (9808).")
def metrics(port: int | None) -> None:
    """Serve Prometheus metrics (jobs, polls, API requests, durations) read from Redis at /metrics."""
    _serving(celery=False)
    from worker.connections import store
    from worker.metrics import serve
    from worker.settings import get_settings

    settings = get_settings()
    say(f"metrics on http://{settings.metrics_address}:{port or settings.metrics_port}/metrics")
    serve(settings, store(), port)


# --- the entry point ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``ajobs``; every error becomes one line and its exit code (`ExitCode`)."""
    _quiet_logging()
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="ajobs", standalone_mode=False
        )
    except (click.exceptions.Abort, KeyboardInterrupt):
        _interrupted()
    except ConfigurationError as exc:  # a SystemExit: a setting stops the command
        _exit(str(exc), ExitCode.USAGE)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    except Exception as exc:
        _exit(*_explained(exc))
    finally:
        _close()
    sys.exit(result if isinstance(result, int) else ExitCode.OK)


def _explained(exc: BaseException) -> tuple[str, ExitCode]:
    """The line and the exit code for an error a command raised (raised again when it is a bug)."""
    from pydantic import ValidationError

    from worker.paths import BadPaths
    from worker.problems import explain
    from worker.producer import ToolOutputsRejected
    from worker.store import JobNotFound

    if isinstance(exc, Failure):
        return str(exc), exc.code
    if isinstance(exc, ValidationError):
        from worker.display import validation_lines

        return "invalid request:\n  " + "\n  ".join(validation_lines(exc.errors())), ExitCode.USAGE
    if isinstance(exc, BadPaths | ToolOutputsRejected | JobNotFound):
        return str(exc), ExitCode.USAGE
    problem = explain(exc, _settings())
    if problem is not None:
        return problem.message, problem.code
    if exc.__cause__ is not None:  # an upload failed: its cause may be one a person can act on
        cause = explain(exc.__cause__, _settings())
        if cause is not None:
            return f"{exc}: {cause.message}", cause.code
    raise exc


def _settings() -> Settings | None:
    from worker.settings import get_settings

    try:
        return get_settings()
    except ConfigurationError:
        return None


def _exit(message: str, code: ExitCode) -> NoReturn:
    warn(f"error: {message}")
    sys.exit(code)


def _interrupted() -> NoReturn:
    """Ctrl-C: say so and leave at once. Nothing is closed on the way out (the OS takes the sockets back):
    an interrupt can land inside a client's bookkeeping, and a close or the interpreter's shutdown could
    then wait for ever on what it left half done."""
    warn("error: interrupted")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(ExitCode.INTERRUPTED)


def _close() -> None:
    client = STATE.pop("jobs", None)
    if client is not None:
        with contextlib.suppress(Exception):  # closing never hides the outcome
            client.close()


def _serving(*, celery: bool) -> None:
    """A role that runs until stopped logs as a service does, not as the CLI's one-line warnings: our
    loggers through the root's handlers, which Celery (and Flower) set up in their roles and the others
    get here, at INFO in Celery's format."""
    ours = logging.getLogger("worker")
    ours.handlers.clear()
    ours.setLevel(logging.NOTSET)
    ours.propagate = True
    if not celery:
        logging.basicConfig(level=logging.INFO, format=c.SERVICE_LOG_FORMAT, force=True)


def _quiet_logging() -> None:
    """Our warnings as ``warning: ...`` lines on stderr; other libraries' log lines not at all."""
    logging.getLogger().addHandler(logging.NullHandler())
    ours = logging.getLogger("worker")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    ours.addHandler(handler)
    ours.setLevel(logging.WARNING)
    ours.propagate = False


if __name__ == "__main__":
    main()
