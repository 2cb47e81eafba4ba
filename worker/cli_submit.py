"""``ajobs submit run|index|cleanup``: build a request from the options, submit it, print its id or wait."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from worker.cli_base import CONTEXT, STATE, Failure, emit_json, jobs, pairs, say, wait_for

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings=CONTEXT)
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
        request["metadata"] = pairs(metadata, "--metadata")
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
        bar = STATE.pop("upload_bar", None)
        if bar is not None:
            bar.stop()


def _upload_progress(as_json: bool, total: int) -> Callable[[int, int, str], None] | None:
    if as_json or not sys.stderr.isatty():
        return None
    from worker.progress import UploadBar

    bar = UploadBar(total)
    STATE["upload_bar"] = bar
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
