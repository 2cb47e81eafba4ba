"""Flower, the operator's window on workers and tasks: ``python -m worker.flower`` (``make flower``).

The launcher builds Flower's options from the settings and refuses to start without basic-auth
credentials unless ``AJ_FLOWER_DEV=1``, and even then only on a loopback address (127.0.0.1, ::1,
localhost), with a warning line: Flower can cancel tasks and shut workers down, so it is never served
without auth where another machine can reach it. The credentials reach Flower through its
``FLOWER_BASIC_AUTH`` environment variable, not the command line, so ``ps`` never shows the password.

What Flower shows of a task is its name, its arguments' repr and its result. Every publisher sets the repr
to the task's job ids and kind (`install_task_display`: ``job_x (run)``, or the first ids and a count for a
message carrying many), so producer data (tool outputs, a poll's body) never shows; and every job task
returns where its jobs ended up (``job_x -> failed (not_found)``, `describe_ends`), which Flower shows as the
result. The API key is never an argument of anything.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Sequence
from typing import Any

from worker import constants as c
from worker.dispatch import job_ids_of
from worker.settings import ConfigurationError, Settings, get_settings

_TOOL_OUTPUTS = c.TASK_TOOL_OUTPUTS.format(kind="run")


def is_loopback(address: str) -> bool:
    """Whether a server bound to ``address`` is reachable from this machine only.

    An empty address binds every interface, so it is not loopback; neither is a name other than
    localhost, which may resolve anywhere.
    """
    host = address.strip().removeprefix("[").removesuffix("]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_credentials(s: Settings) -> bool:
    """Whether the settings give Flower a basic-auth user and password."""
    return bool(s.flower_user and s.flower_password and s.flower_password.get_secret_value())


def flower_env(s: Settings, base: dict[str, str]) -> dict[str, str]:
    """The environment Flower runs with: ``base`` plus the basic auth from the settings.

    Raises `ConfigurationError` naming the settings when credentials are missing, unless ``AJ_FLOWER_DEV``
    is set and ``AJ_FLOWER_ADDRESS`` is a loopback address.
    """
    env = {k: v for k, v in base.items() if k != "FLOWER_BASIC_AUTH"}
    password = s.flower_password.get_secret_value() if s.flower_password else ""
    if s.flower_user and password:
        env["FLOWER_BASIC_AUTH"] = f"{s.flower_user}:{password}"
    elif not s.flower_dev:
        raise ConfigurationError(
            "Flower needs AJ_FLOWER_USER and AJ_FLOWER_PASSWORD (basic auth); "
            "set AJ_FLOWER_DEV=1 to run it without them on a developer's machine"
        )
    elif not is_loopback(s.flower_address):
        raise ConfigurationError(
            f"AJ_FLOWER_DEV=1 serves Flower without auth only on a loopback AJ_FLOWER_ADDRESS "
            f"(127.0.0.1, ::1, localhost), not {s.flower_address!r}; "
            "set AJ_FLOWER_USER and AJ_FLOWER_PASSWORD to serve it there"
        )
    return env


def dev_warning(s: Settings) -> str | None:
    """The one line to print when Flower will run without auth (``AJ_FLOWER_DEV=1``), else None."""
    if has_credentials(s):
        return None
    return (
        f"warning: Flower runs without auth (AJ_FLOWER_DEV=1) on {s.flower_address}:{s.flower_port}; "
        "anyone with a shell on this machine can cancel tasks and shut workers down"
    )


TASKS_COLUMNS = "name,args,result,state,received,runtime,worker,uuid"
"""The columns of Flower's tasks page: its defaults plus the arguments (the task's jobs and kind) and the
result (where they ended), so the page shows jobs and their outcomes."""


def flower_argv(s: Settings, python: str = sys.executable) -> list[str]:
    """The command that starts Flower against the workers' broker, on the settings' address and port,
    showing each task's jobs and their ends."""
    return [
        python, "-m", "celery", "-A", "worker.app", "flower",
        f"--address={s.flower_address}", f"--port={s.flower_port}", f"--tasks_columns={TASKS_COLUMNS}",
    ]  # fmt: skip


def main() -> None:
    """Replace this process with Flower (so signals reach Flower itself)."""
    settings = get_settings()
    env = flower_env(settings, dict(os.environ))
    warning = dev_warning(settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    argv = flower_argv(settings)
    os.execve(argv[0], argv, env)


SHOWN_IDS = 3
"""Job ids a task carrying many jobs shows before "+N more" (in its arguments and its result)."""


def describe_args(task: str, args: Sequence[Any]) -> str:
    """What Flower shows as a task's arguments: its job ids and kind (``job_x (run)``; the first ids and
    the count for a message carrying many), never producer data: tool outputs become a count."""
    if task == c.TASK_SCHEDULED_CLEANUP:
        targets = args[0] if args and isinstance(args[0], list) else []
        return f"sweep of {', '.join(str(t) for t in targets) or 'every target'}"
    kind = task.split(".")[1] if task.count(".") >= 2 else "?"
    ids = job_ids_of(args)
    if not ids:
        return f"({kind})"
    shown = _listed(ids)
    line = f"{shown} ({kind})" if len(ids) == 1 else f"{len(ids)} {kind} jobs: {shown}"
    if task == _TOOL_OUTPUTS and len(args) >= 2 and isinstance(args[1], list):
        line += f", {len(args[1])} tool outputs"
    elif task.endswith(".cancel") and len(args) >= 2 and isinstance(args[1], str):
        line += f", {args[1]}"
    return line


def describe_ends(ends: Sequence[tuple[str, str | None, str | None]]) -> str:
    """What a task returns for Flower to show as its result: where each of its jobs is now,
    ``job_x -> failed (not_found)``; the first few and the count for many."""
    parts = [_end(job_id, status, code) for job_id, status, code in ends[:SHOWN_IDS]]
    if len(ends) > SHOWN_IDS:
        parts.append(f"+{len(ends) - SHOWN_IDS} more")
    return "; ".join(parts)


def _end(job_id: str, status: str | None, code: str | None) -> str:
    if status is None:
        return f"{job_id} -> gone"
    return f"{job_id} -> {status}" + (f" ({code})" if code else "")


def _listed(ids: Sequence[str]) -> str:
    more = len(ids) - SHOWN_IDS
    return ", ".join(ids[:SHOWN_IDS]) + (f" +{more} more" if more > 0 else "")


def show_task(
    sender: str | None = None, headers: dict[str, Any] | None = None, body: Any = None, **_: Any
) -> None:
    """Set a published task's ``argsrepr`` (what Flower shows) to `describe_args` (a Celery
    ``before_task_publish`` handler: it runs in whatever process publishes, producer or worker)."""
    if not sender or not sender.startswith("aj.") or headers is None:
        return
    args = body[0] if isinstance(body, tuple | list) and body else []
    if isinstance(args, list | tuple):
        headers["argsrepr"] = describe_args(sender, args)


def install_task_display() -> None:
    """Connect `show_task` to Celery's publish signal (idempotent)."""
    from celery.signals import before_task_publish

    before_task_publish.connect(show_task, weak=False, dispatch_uid="aj-show-task")


if __name__ == "__main__":
    main()
