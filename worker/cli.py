"""``ajobs``: submit jobs and follow them from a shell, and start the roles an operator runs.

Exit codes (`worker.problems.ExitCode`, listed in the README): 0 success, 1 the job ended badly, 2 usage
or validation, 3 infrastructure unreachable, 4 timed out waiting, 130 interrupted. Every error is one
line on stderr (a bad request: one line per field), never a traceback, unless it is a bug.

Read commands import only what reading needs (click, the record model, the Redis client): Celery, the
request models and the OpenAI SDK are imported by the commands that use them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from schemas.job import JobKind, JobRecord, JobStatus
from worker.problems import ExitCode
from worker.settings import ConfigurationError

if TYPE_CHECKING:
    from worker.client import Jobs
    from worker.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

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
_STATE: dict[str, Any] = {}


def jobs(check_paths: bool = True) -> Jobs:
    """The producer client (built once per command; Celery only if the command publishes)."""
    if "jobs" not in _STATE:
        from worker.client import Jobs

        _STATE["jobs"] = Jobs(check_paths=check_paths)
    client: Jobs = _STATE["jobs"]
    return client


def _settings() -> Settings | None:
    from worker.settings import get_settings

    try:
        return get_settings()
    except ConfigurationError:
        return None


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


# --- commands -------------------------------------------------------------------------------------
@click.group(context_settings=CONTEXT)
@click.version_option(package_name="assistant-jobs", prog_name="ajobs", message="%(prog)s %(version)s")
def cli() -> None:
    """Submit OpenAI jobs and follow them; start the workers, beat, Flower and the metrics exporter.

    Exit codes: 0 success, 1 the job ended badly, 2 usage or validation, 3 Redis, the broker or the API
    unreachable, 4 timed out waiting, 130 interrupted.
    """


@cli.group(context_settings=CONTEXT)
def submit() -> None:
    """Submit a job: prints its id at once, or waits for its end with --wait."""


_common = [
    click.option("--idempotency-key", help="The same key within AJ_IDEMPOTENCY_TTL returns the same job."),
    click.option(
        "--deadline", "deadline_s", type=float, help="Seconds the job may take (default AJ_DEFAULT_DEADLINE)."
    ),
    click.option(
        "--wait", is_flag=True, help="Wait for the job's end and show it; exit 1 if it ended badly."
    ),
    click.option("--timeout", type=float, help="With --wait: seconds to wait at most (then exit 4)."),
    click.option(
        "--json", "as_json", is_flag=True, help="Print JSON: {id, created}, or the record with --wait."
    ),
]


def common(fn: F) -> F:
    """The options every submit command takes."""
    for option in reversed(_common):
        fn = option(fn)
    return fn


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise Failure(f"{option} takes KEY=VALUE, got {item!r}")
        result[key] = value
    return result


def _submitted(request: dict[str, Any], wait: bool, timeout: float | None, as_json: bool, **how: Any) -> None:
    check_paths = how.pop("check_paths", True)
    ref = jobs(check_paths).submit(request, **how)
    if wait:
        wait_for(ref.id, timeout, as_json)
    if as_json:
        emit_json({"id": ref.id, "created": ref.created})
    else:
        say(ref.id if ref.created else f"{ref.id} (an existing job: same idempotency key)")


@submit.command("run", context_settings=CONTEXT)
@click.option("-m", "--message", "messages", multiple=True, help="A user message (repeatable, in order).")
@click.option("--model", help="The model (responses backend), e.g. gpt-4o.")
@click.option("--backend", type=click.Choice(["responses", "assistants"]), help="Default: AJ_RUN_BACKEND.")
@click.option("--assistant", "assistant_id", help="The assistant id (assistants backend).")
@click.option("--thread", "thread_id", help="An existing thread (assistants); a new one when omitted.")
@click.option("--conversation", "conversation_id", help="An existing conversation (responses).")
@click.option("--instructions", help="Instructions for this run.")
@click.option("--metadata", multiple=True, help="KEY=VALUE (repeatable; at most 16 pairs).")
@click.option(
    "--strategy",
    type=click.Choice(["enqueue", "reject", "interrupt"]),
    help="When the thread or conversation is busy: wait in turn, fail, or cancel the active run.",
)
@click.option(
    "--body", type=click.File("r"), help="A JSON request (the options above override it); - for stdin."
)
@common
def submit_run(
    body: Any,
    messages: tuple[str, ...],
    metadata: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Submit a model run (a background response, or an assistant's run)."""
    request: dict[str, Any] = json.load(body) if body else {}
    request.update({k: v for k, v in fields.items() if v is not None})
    if messages:
        request["messages"] = [{"role": "user", "content": m} for m in messages]
    if metadata:
        request["metadata"] = _pairs(metadata, "--metadata")
    request["kind"] = "run"
    _submitted(request, wait, timeout, as_json)


@submit.command("index", context_settings=CONTEXT)
@click.option("--store", "vector_store_id", help="An existing vector store id.")
@click.option("--new-store", help="Create a vector store with this name.")
@click.option("--file-id", "file_ids", multiple=True, help="An already uploaded file id (repeatable).")
@click.option("--retry-failed", type=int, help="Extra rounds for files that fail to index (default 1).")
@click.option(
    "--skip-bad-paths", is_flag=True, help="Skip bad paths (named in the result) instead of refusing."
)
@click.option(
    "--upload",
    is_flag=True,
    help="Upload the files from here and submit their ids: the workers need no access to them "
    "(needs OPENAI_API_KEY here).",
)
@click.option(
    "--remote-paths",
    is_flag=True,
    help="The paths are where the workers run, not here: not checked here, and they must be absolute.",
)
@click.argument("paths", nargs=-1)
@common
def submit_index(
    new_store: str | None,
    file_ids: tuple[str, ...],
    paths: tuple[str, ...],
    upload: bool,
    remote_paths: bool,
    wait: bool,
    timeout: float | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Index files into a vector store: PATHS on this machine (made absolute and checked first), and/or
    uploaded --file-id's."""
    if upload and remote_paths:
        raise Failure("--upload reads the files here; --remote-paths says they are not here: pick one")
    request: dict[str, Any] = {"kind": "index", **{k: v for k, v in fields.items() if v not in (None, False)}}
    if new_store:
        request["new_store"] = {"name": new_store}
    if file_ids:
        request["file_ids"] = list(file_ids)
    if paths:
        request["paths"] = list(paths)
    how: dict[str, Any] = {"check_paths": not remote_paths}
    if upload:
        how.update(upload=True, on_upload=_upload_progress(as_json, len(paths)))
    try:
        _submitted(request, wait, timeout, as_json, **how)
    finally:
        bar = _STATE.pop("upload_bar", None)
        if bar is not None:
            bar.stop()


def _upload_progress(as_json: bool, total: int) -> Callable[[int, int, str], None] | None:
    if as_json or not sys.stderr.isatty():
        return None
    from worker.progress import UploadBar

    bar = UploadBar(total)
    _STATE["upload_bar"] = bar
    return bar.update


@submit.command("cleanup", context_settings=CONTEXT)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(["threads", "conversations", "vector_stores", "files", "jobs"]),
    help="What to clean up (repeatable; default: everything).",
)
@click.option("--include-unmanaged", is_flag=True, help="Also touch objects this system did not create.")
@common
def submit_cleanup(
    targets: tuple[str, ...], wait: bool, timeout: float | None, as_json: bool, **fields: Any
) -> None:
    """Run a clean-up sweep by hand."""
    request: dict[str, Any] = {"kind": "cleanup", **{k: v for k, v in fields.items() if v is not None}}
    if targets:
        request["targets"] = list(targets)
    _submitted(request, wait, timeout, as_json)


@cli.command("tool-outputs", context_settings=CONTEXT)
@click.argument("job_id")
@click.option("-o", "--output", "outputs", multiple=True, help="CALL_ID=OUTPUT (repeatable).")
@click.option("--json-file", type=click.File("r"), help="A JSON list of {tool_call_id, output}; - for stdin.")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def tool_outputs(job_id: str, outputs: tuple[str, ...], json_file: Any, as_json: bool) -> None:
    """Answer the tool calls a job waits on (every pending call, once)."""
    given = json.load(json_file) if json_file else []
    given += [{"tool_call_id": k, "output": v} for k, v in _pairs(outputs, "--output").items()]
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
    from worker.launch import run_worker

    sys.exit(run_worker(celery_args))


@cli.command("beat", context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat_command(celery_args: tuple[str, ...]) -> None:
    """Start beat with the redbeat scheduler (any number may run: one fires the sweeps)."""
    from worker.launch import run_beat

    sys.exit(run_beat(celery_args))


@cli.command("webhooks", context_settings=CONTEXT)
@click.option("--port", type=int, help="Default: AJ_WEBHOOK_PORT (8780).")
def webhooks_command(port: int | None) -> None:
    """Receive OpenAI's signed webhooks and wake the jobs whose responses ended (AJ_WEBHOOK_SECRET)."""
    from worker.settings import get_settings
    from worker.webhooks import serve

    settings = get_settings()
    serve(settings.model_copy(update={"webhook_port": port}) if port else settings)


@cli.command("flower", context_settings=_PASS_THROUGH)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower_command(flower_args: tuple[str, ...]) -> None:
    """Start Flower behind basic auth (AJ_FLOWER_USER and AJ_FLOWER_PASSWORD, or AJ_FLOWER_DEV=1)."""
    from worker.launch import run_flower

    sys.exit(run_flower(flower_args))


@cli.command(context_settings=CONTEXT)
@click.option("--port", type=int, help="Default: AJ_METRICS_PORT (9808).")
def metrics(port: int | None) -> None:
    """Serve Prometheus metrics (jobs, polls, API requests, durations) read from Redis at /metrics."""
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
        _exit("interrupted", ExitCode.INTERRUPTED)
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


def _exit(message: str, code: ExitCode) -> NoReturn:
    warn(f"error: {message}")
    sys.exit(code)


def _close() -> None:
    client = _STATE.pop("jobs", None)
    if client is not None:
        with contextlib.suppress(Exception):  # closing never hides the outcome
            client.close()


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
