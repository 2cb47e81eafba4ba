"""``ajobs``: submit jobs and follow them from a shell.

Exit codes: 0 success, 1 the job ended in failure, 2 usage or validation error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from schemas.job import JobRecord, JobStatus
from schemas.requests import json_schemas
from worker.settings import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])
out = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _jobs() -> Any:
    from worker.client import Jobs

    return Jobs()


def _fail_usage(message: str) -> NoReturn:
    # soft_wrap: a long message stays one line in a log, however narrow the terminal.
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_USAGE)


def friendly(fn: F) -> F:
    """Turn validation and configuration errors into a message naming each bad field, exit 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from worker.client import ToolOutputsRejected
        from worker.store import JobNotFound

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()]
            _fail_usage("invalid request:\n" + "\n".join(lines))
        except (ToolOutputsRejected, JobNotFound) as exc:
            _fail_usage(str(exc))
        except ConfigurationError as exc:
            _fail_usage(str(exc))

    return wrapper  # type: ignore[return-value]


def _print_record(record: JobRecord, as_json: bool) -> None:
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return
    table = Table(show_header=False, box=None)
    table.add_row("id", record.id)
    table.add_row("kind", record.kind.value)
    table.add_row("status", record.status.value)
    for key, value in record.remote.items():
        table.add_row(key, str(value))
    if record.tool_calls:
        for call in record.tool_calls:
            table.add_row("tool call", f"{call.id} {call.name}({call.arguments})")
    if record.progress:
        p = record.progress
        table.add_row(
            "progress", f"{p.completed}/{p.total} done, {p.failed} failed, {p.in_progress} in progress"
        )
    if record.result:
        text = record.result.get("text")
        table.add_row("result", text if isinstance(text, str) else json.dumps(record.result))
    if record.usage:
        table.add_row("usage", f"{record.usage.prompt_tokens} in, {record.usage.completion_tokens} out")
    if record.error:
        table.add_row("error", f"{record.error.code}: {record.error.message}")
    out.print(table)


def _exit_for(record: JobRecord) -> NoReturn:
    ok = record.status in (
        JobStatus.COMPLETED,
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.REQUIRES_ACTION,
    )
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            _fail_usage(f"{option} takes KEY=VALUE, got {item!r}")
        result[key] = value
    return result


def _submit_and_report(request: dict[str, Any], wait: bool, timeout: float | None, as_json: bool) -> None:
    jobs = _jobs()
    ref = jobs.submit(request)
    if not wait:
        if as_json:
            click.echo(json.dumps({"id": ref.id, "created": ref.created}))
        else:
            out.print(f"{ref.id}{'' if ref.created else ' (existing job for this idempotency key)'}")
        return
    record = _wait(jobs, ref.id, timeout, as_json)
    _print_record(record, as_json)
    _exit_for(record)


def _wait(jobs: Any, job_id: str, timeout: float | None, as_json: bool) -> JobRecord:
    record: JobRecord = jobs.get(job_id)
    if as_json or record.status.ended or record.kind.value != "index":
        return jobs.wait(job_id, timeout)  # type: ignore[no-any-return]
    from worker.progress import follow_progress

    return follow_progress(jobs, job_id, timeout)


@click.group()
def main() -> None:
    """Submit OpenAI jobs and follow them."""


@main.group()
def submit() -> None:
    """Submit a job (prints its id at once, or waits with --wait)."""


_common = [
    click.option("--idempotency-key", help="The same key within its TTL returns the same job."),
    click.option("--deadline", "deadline_s", type=float, help="Seconds the job may take."),
    click.option("--wait", is_flag=True, help="Wait for the job's end and print it."),
    click.option("--timeout", type=float, help="Seconds to wait at most with --wait."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def common(fn: F) -> F:
    """The options every submit command takes."""
    for option in reversed(_common):
        fn = option(fn)
    return fn


@submit.command("run")
@click.option("--assistant", "assistant_id", help="Assistant id (assistants backend).")
@click.option("--backend", type=click.Choice(["assistants", "responses"]))
@click.option("--thread", "thread_id", help="Existing thread (a new one is created when omitted).")
@click.option("--conversation", "conversation_id", help="Existing conversation (responses backend).")
@click.option("-m", "--message", "messages", multiple=True, help="A user message (repeatable).")
@click.option("--model")
@click.option("--instructions")
@click.option("--metadata", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--strategy", type=click.Choice(["enqueue", "reject", "interrupt"]))
@click.option(
    "--body", type=click.File("r"), help="A JSON request (fields above override it); '-' for stdin."
)
@common
@friendly
def submit_run(
    body: Any,
    messages: tuple[str, ...],
    metadata: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Submit a model run."""
    request: dict[str, Any] = json.load(body) if body else {}
    request.update({k: v for k, v in fields.items() if v is not None})
    if messages:
        request["messages"] = [{"role": "user", "content": m} for m in messages]
    if metadata:
        request["metadata"] = _pairs(metadata, "--metadata")
    request["kind"] = "run"
    _submit_and_report(request, wait, timeout, as_json)


@submit.command("index")
@click.option("--store", "vector_store_id", help="Existing vector store id.")
@click.option("--new-store", help="Create a vector store with this name.")
@click.option("--file-id", "file_ids", multiple=True, help="An uploaded file id (repeatable).")
@click.option("--retry-failed", type=int, help="Extra rounds for files that fail to index.")
@click.option(
    "--skip-bad-paths", is_flag=True, help="Skip bad paths (named in the result) instead of refusing."
)
@click.argument("paths", nargs=-1)
@common
@friendly
def submit_index(
    new_store: str | None,
    file_ids: tuple[str, ...],
    paths: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Index files into a vector store."""
    request: dict[str, Any] = {"kind": "index", **{k: v for k, v in fields.items() if v not in (None, False)}}
    if new_store:
        request["new_store"] = {"name": new_store}
    if file_ids:
        request["file_ids"] = list(file_ids)
    if paths:
        request["paths"] = list(paths)
    _submit_and_report(request, wait, timeout, as_json)


@submit.command("cleanup")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(["threads", "conversations", "vector_stores", "files", "jobs"]),
)
@click.option("--include-unmanaged", is_flag=True, help="Also touch objects this system did not create.")
@common
@friendly
def submit_cleanup(
    targets: tuple[str, ...], wait: bool, timeout: float | None, as_json: bool, **fields: Any
) -> None:
    """Run a clean-up sweep by hand."""
    request: dict[str, Any] = {"kind": "cleanup", **{k: v for k, v in fields.items() if v is not None}}
    if targets:
        request["targets"] = list(targets)
    _submit_and_report(request, wait, timeout, as_json)


@main.command("tool-outputs")
@click.argument("job_id")
@click.option("-o", "--output", "outputs", multiple=True, help="CALL_ID=OUTPUT (repeatable).")
@click.option(
    "--json-file", type=click.File("r"), help="A JSON list of {tool_call_id, output}; '-' for stdin."
)
@click.option("--json", "as_json", is_flag=True)
@friendly
def tool_outputs(job_id: str, outputs: tuple[str, ...], json_file: Any, as_json: bool) -> None:
    """Answer the tool calls a job waits on."""
    given = json.load(json_file) if json_file else []
    given += [{"tool_call_id": k, "output": v} for k, v in _pairs(outputs, "--output").items()]
    _print_record(_jobs().submit_tool_outputs(job_id, given), as_json)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@friendly
def status(job_id: str, as_json: bool) -> None:
    """Show a job."""
    _print_record(_jobs().get(job_id), as_json)


@main.command()
@click.argument("job_id")
@click.option("--timeout", type=float)
@click.option("--json", "as_json", is_flag=True)
@friendly
def wait(job_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a job's end (a progress bar for indexing jobs); exit 1 if it failed."""
    record = _wait(_jobs(), job_id, timeout, as_json)
    _print_record(record, as_json)
    _exit_for(record)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@friendly
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job."""
    _print_record(_jobs().cancel(job_id), as_json)


@main.command("list")
@click.option("--status", "status_", type=click.Choice([s.value for s in JobStatus]))
@click.option("--limit", type=click.IntRange(1, 10_000), default=50)
@click.option("--json", "as_json", is_flag=True)
@friendly
def list_jobs(status_: str | None, limit: int, as_json: bool) -> None:
    """List the newest jobs."""
    records = _jobs().list(JobStatus(status_) if status_ else None, limit)
    _print_table(records, as_json)


def _print_table(records: Sequence[JobRecord], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    table = Table("id", "kind", "status", "updated", "error")
    for r in records:
        table.add_row(
            r.id, r.kind.value, r.status.value, f"{r.updated_at:.0f}", r.error.code if r.error else ""
        )
    out.print(table)


@main.command()
@click.option("--follow", is_flag=True, help="Keep printing new events.")
@click.option("--since", help="Stream id to start after (default: the start, or now with --follow).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def events(follow: bool, since: str | None, as_json: bool) -> None:
    """Print job events."""
    jobs = _jobs()
    last = since or ("$" if follow else None)
    while True:
        batch = jobs.events(last, block_ms=5000 if follow else None)
        for e in batch:
            last = e.stream_id
            if as_json:
                click.echo(e.model_dump_json())
            else:
                out.print(f"{e.stream_id} {e.type:<22} {e.job_id} {e.status.value}", highlight=False)
        if not follow and not batch:
            return


@main.group()
def dead() -> None:
    """Jobs that exhausted their retries."""


@dead.command("list")
@click.option("--json", "as_json", is_flag=True)
@friendly
def dead_list(as_json: bool) -> None:
    """List dead-lettered jobs."""
    _print_table(_jobs().dead(), as_json)


@dead.command("retry")
@click.argument("job_id")
@friendly
def dead_retry(job_id: str) -> None:
    """Submit a dead-lettered job again (as a new job)."""
    ref = _jobs().retry_dead(job_id)
    out.print(ref.id)


@main.command()
@click.argument("name", required=False)
def schema(name: str | None) -> None:
    """Print the JSON Schemas of the requests, for producers in other languages."""
    schemas = json_schemas()
    if name and name not in schemas:
        _fail_usage(f"no schema {name!r}; known: {', '.join(schemas)}")
    click.echo(json.dumps(schemas[name] if name else schemas, indent=2))


# The roles' own options belong to Celery: everything after the command, --help included, goes to it.
_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@main.command("worker", context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@friendly
def worker_command(celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker and its poll loop (options go to celery worker, e.g. --concurrency 4 -Q runs)."""
    from worker.launch import run_worker

    sys.exit(run_worker(celery_args))


@main.command("beat", context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@friendly
def beat_command(celery_args: tuple[str, ...]) -> None:
    """Start beat with the redbeat scheduler (any number may run: one fires the sweeps)."""
    from worker.launch import run_beat

    sys.exit(run_beat(celery_args))


@main.command("webhooks")
@click.option("--port", type=int, help="Default: AJ_WEBHOOK_PORT (8780).")
@friendly
def webhooks_command(port: int | None) -> None:
    """Receive OpenAI's signed webhooks and wake the jobs whose responses ended (AJ_WEBHOOK_SECRET)."""
    from worker.settings import get_settings
    from worker.webhooks import serve

    settings = get_settings()
    serve(settings.model_copy(update={"webhook_port": port}) if port else settings)


@main.command("flower", context_settings=_PASS_THROUGH)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@friendly
def flower_command(flower_args: tuple[str, ...]) -> None:
    """Start Flower behind basic auth (AJ_FLOWER_USER and AJ_FLOWER_PASSWORD, or AJ_FLOWER_DEV=1)."""
    from worker.launch import run_flower

    sys.exit(run_flower(flower_args))


@main.command()
@click.option("--port", type=int, help="Default: AJ_METRICS_PORT (9808).")
@friendly
def metrics(port: int | None) -> None:
    """Serve Prometheus metrics (jobs, polls, API requests) read from Redis at /metrics."""
    from worker.connections import store
    from worker.metrics import serve
    from worker.settings import get_settings

    settings = get_settings()
    out.print(f"metrics on http://{settings.metrics_address}:{port or settings.metrics_port}/metrics")
    serve(settings, store(), port)


if __name__ == "__main__":
    main()
