"""``make demo``: the whole system end to end on embedded defaults.

Uses ``AJ_REDIS_URL`` when a Redis answers there, else starts a private redis-server (with AOF); starts
the emulator, a worker, a beat and the webhook receiver (webhooks on: the emulator signs an event as each
background response ends); runs real jobs (a question and a function call on each run backend, an
indexing job over the sample files, a file_search question, a clean-up dry run) and prints what they
produced and how each run's end was learnt (webhook or poll). Everything it started is stopped when it
ends, Ctrl-C included.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
from rich.console import Console
from rich.table import Table

from devkit.redis_server import answers, free_port, private_redis
from schemas.job import JobRecord
from tasks.assistants import quiet_assistants_deprecation

console = Console()
SAMPLES = Path(__file__).parent / "demo_files"
API_KEY = "sk-demo"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"assistant-jobs demo webhook secret").decode()
"""The secret the emulator signs its webhooks with and the receiver checks them against."""


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """``AJ_REDIS_URL`` when it answers, else a private redis-server for the demo's lifetime."""
    given = os.environ.get("AJ_REDIS_URL")
    if given and answers(given):
        console.print(f"Redis: using AJ_REDIS_URL ({given})")
        yield given
        return
    with private_redis() as url:
        console.print(f"Redis: started a private redis-server at {url}")
        yield url


@contextlib.contextmanager
def process(name: str, argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in the background; stop it (and its children) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    console.print(f"{name}: started (pid {proc.pid}, log {log})")
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_until(check: Any, what: str, timeout: float = 30.0) -> None:
    """Poll ``check()`` until true (start-up only)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not come up in {timeout:.0f} s")
        time.sleep(0.1)


def _quietly(check: Any) -> bool:
    try:
        return bool(check())
    except OSError:
        return False


def show(title: str, record: JobRecord) -> None:
    """Print one job's outcome."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_row("job", f"{record.id} ({record.request.get('backend', record.kind.value)})")
    table.add_row("status", record.status.value)
    if record.result and "text" in record.result:
        table.add_row("answer", record.result["text"])
        for note in record.result.get("annotations") or []:
            table.add_row("cites", str(note.get("file_id")))
    elif record.result:
        scalars = {k: v for k, v in record.result.items() if not isinstance(v, list | dict)}
        table.add_row("result", ", ".join(f"{k}={v}" for k, v in scalars.items()))
    if record.end_learnt_by:
        table.add_row("end learnt by", record.end_learnt_by)
    if record.usage:
        table.add_row(
            "usage", f"{record.usage.prompt_tokens} prompt + {record.usage.completion_tokens} completion"
        )
    if record.error:
        table.add_row("error", f"{record.error.code}: {record.error.message}")
    console.print(table)


def run_jobs(base_url: str) -> bool:
    """Submit the demo's jobs, print their outcomes; True when every one ended as expected."""
    from worker.client import Jobs

    jobs = Jobs()
    api = openai.OpenAI(base_url=base_url, api_key=API_KEY)
    quiet_assistants_deprecation()
    assistant = api.beta.assistants.create(
        model="gpt-4o", name="demo", tools=[{"type": "function", "function": {"name": "get_weather"}}]
    )
    question = {"role": "user", "content": "What is the capital of France?"}
    weather = {"role": "user", "content": "What does get_weather say for Paris?"}
    flat_tool = [{"type": "function", "name": "get_weather"}]
    runs = {
        "Assistants: a plain question": {
            "backend": "assistants",
            "assistant_id": assistant.id,
            "messages": [question],
        },
        "Assistants: a function tool answered by a worker function": {
            "backend": "assistants",
            "assistant_id": assistant.id,
            "messages": [weather],
        },
        "Responses: a plain question": {"backend": "responses", "model": "gpt-4o", "messages": [question]},
        "Responses: a function tool answered by a worker function": {
            "backend": "responses",
            "model": "gpt-4o",
            "tools": flat_tool,
            "messages": [weather],
        },
    }
    refs = {title: jobs.submit({"kind": "run", **request}) for title, request in runs.items()}
    index = jobs.submit(
        {
            "kind": "index",
            "new_store": {"name": "demo-docs"},
            "paths": [str(p) for p in sorted(SAMPLES.iterdir())],
        }
    )
    ok = True
    for title, ref in refs.items():
        record = jobs.wait(ref.id, timeout=60)
        show(title, record)
        ok &= record.status.value == "completed"
    indexed = jobs.wait(index.id, timeout=120)
    show(f"Indexing {len(list(SAMPLES.iterdir()))} sample files into a new vector store", indexed)
    ok &= indexed.status.value == "completed"
    store_id = (indexed.result or {}).get("vector_store_id")
    if store_id:
        ask = jobs.submit(
            {
                "kind": "run",
                "backend": "responses",
                "model": "gpt-4o",
                "tools": [{"type": "file_search", "vector_store_ids": [store_id]}],
                "messages": [{"role": "user", "content": "How long is the warranty?"}],
            }
        )
        searched = jobs.wait(ask.id, timeout=60)
        show("file_search over the indexed store", searched)
        ok &= searched.status.value == "completed"
    sweep = jobs.wait(jobs.submit({"kind": "cleanup", "dry_run": True}).id, timeout=60)
    show("Clean-up dry run (deletes nothing)", sweep)
    ok &= sweep.status.value == "completed"
    return ok


def main() -> int:
    """Run the demo; exit 0 when every job ended as expected."""
    # Ctrl-C (even where a shell started us with SIGINT ignored) and SIGTERM run the same clean-up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logs = Path(os.environ.get("AJ_DEMO_LOGS", ".demo-logs"))
    logs.mkdir(exist_ok=True)
    try:
        with redis_url() as url:
            port, hook_port = free_port(), free_port()
            base_url = f"http://127.0.0.1:{port}/v1"
            # The emulator signs a webhook to the receiver as each background response ends; the
            # receiver wakes the job's poll, so polling is only the safety net.
            profile = {
                "seed": 1,
                "poll_after_ms": 300,
                "webhook_urls": [f"http://127.0.0.1:{hook_port}/webhooks/openai"],
                "webhook_secret": WEBHOOK_SECRET,
            }
            env = {
                **os.environ,
                "AJ_REDIS_URL": url,
                "OPENAI_BASE_URL": base_url,
                "OPENAI_API_KEY": API_KEY,
                "AJ_TOOL_MODULES": '["devkit.example_tools"]',
                "AJ_EMULATOR_PROFILE": json.dumps(profile),
                "AJ_POLL_FIRST": "0.3",
                "AJ_POLL_CAP": "0.6",
                "AJ_WEBHOOKS": "true",
                "AJ_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "AJ_WEBHOOK_PORT": str(hook_port),
                "AJ_WEBHOOK_SAFETY_POLL": "10",
            }
            os.environ.update({k: v for k, v in env.items() if k.startswith(("AJ_", "OPENAI_"))})
            py = sys.executable
            with (
                process(
                    "emulator",
                    [py, "-m", "emulator", "--port", str(port), "--api-key", API_KEY],
                    env,
                    logs / "emulator.log",
                ),
                process("worker", [py, "-m", "worker.cli", "worker"], env, logs / "worker.log"),
                process("beat", [py, "-m", "worker.cli", "beat"], env, logs / "beat.log"),
                process("webhooks", [py, "-m", "worker.cli", "webhooks"], env, logs / "webhooks.log"),
            ):
                from emulator.admin_client import EmulatorAdmin

                admin = EmulatorAdmin(base_url)
                wait_until(lambda: _quietly(admin.health), "the emulator")
                wait_until(
                    lambda: "ready." in (logs / "worker.log").read_text(errors="replace"), "the worker", 60
                )
                ok = run_jobs(base_url)
        console.print(
            "[green]demo finished: every job ended as expected[/green]"
            if ok
            else "[red]demo finished: some job did not end as expected[/red]"
        )
        return 0 if ok else 1
    except KeyboardInterrupt:
        console.print("demo interrupted: everything it started has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
