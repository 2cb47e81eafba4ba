"""Indexing N files into a vector store: our worker against the SDK's poll helpers, on one emulator profile.

Both sides index the same number of files into a fresh store of one emulator (a separate process) with
the same profile; the emulator's counters give the API requests of each side.

- ids: N already-uploaded file ids. Ours: one job with ``file_ids``. SDK: ``file_batches.create_and_poll``
  once per 2,000 ids (one call with all N is refused above 2,000, which the bench also shows).
- upload: N small local files. Ours: one job with ``paths``. SDK: ``file_batches.upload_and_poll`` once
  per 2,000 files (it uploads five at a time, then polls the batch).

    .venv/bin/python bench/index_bench.py [--files 10000] [--modes ids,upload]

Writes bench/results/index.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai

from devkit.redis_server import private_redis
from emulator.admin_client import EmulatorAdmin

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "index.json"
API_KEY = "sk-bench"
SDK_BATCH = 2000
PROFILE = {
    "seed": 3,
    # Files take 1-10 s to index; the server asks pollers to wait 1 s between polls (the API's default).
    "file_index_duration": {"kind": "uniform", "min": 1.0, "max": 10.0},
    "p_file_failed": 0.0,
    "poll_after_ms": 1000,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    """`python -m emulator` in its own process with the bench profile."""
    env = {**os.environ, "AJ_EMULATOR_PROFILE": json.dumps(PROFILE)}
    cmd = [sys.executable, "-m", "emulator", "--port", str(port), "--api-key", API_KEY]
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real Celery worker (with its poller) on all queues, waiting until it is ready."""
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "--loglevel=INFO",
        "--concurrency=2",
        f"--logfile={log}",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "ready." not in (log.read_text(errors="replace") if log.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not start")
        time.sleep(0.2)
    return proc


def counts(admin: EmulatorAdmin) -> dict[str, Any]:
    """Total requests and the busiest routes since the last reset."""
    snap = admin.counters()
    routes = dict(sorted(snap["requests"].items(), key=lambda kv: -kv[1]))
    return {"requests": snap["total"], "routes": routes}


def ours(env: dict[str, str], admin: EmulatorAdmin, inputs: dict[str, Any]) -> dict[str, Any]:
    """One indexing job through the worker; wall time from submit to the job's end."""
    for key, value in env.items():
        os.environ[key] = value
    from worker.client import Jobs  # settings are read from the environment set just above

    jobs = Jobs()
    admin.reset_counters()
    began = time.perf_counter()
    ref = jobs.submit({"kind": "index", "new_store": {"name": "bench-ours"}, "retry_failed": 0, **inputs})
    record = jobs.wait(ref.id, timeout=1800)
    wall = time.perf_counter() - began
    result = record.result or {}
    return {
        "wall_s": round(wall, 2),
        "status": record.status.value,
        "file_counts": result.get("file_counts"),
        "batches": len(result.get("batches", [])),
        **counts(admin),
    }


def sdk(base_url: str, admin: EmulatorAdmin, file_ids: list[str], paths: list[str]) -> dict[str, Any]:
    """The SDK's helpers, one call per 2,000 files, one after another, as a script would."""
    client = openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=2)
    admin.reset_counters()
    began = time.perf_counter()
    store = client.vector_stores.create(name="bench-sdk")
    completed = 0
    for i in range(0, max(len(file_ids), len(paths)), SDK_BATCH):
        if paths:
            with ExitStack() as stack:
                files = [stack.enter_context(open(p, "rb")) for p in paths[i : i + SDK_BATCH]]
                batch = client.vector_stores.file_batches.upload_and_poll(store.id, files=files)
        else:
            batch = client.vector_stores.file_batches.create_and_poll(
                store.id, file_ids=file_ids[i : i + SDK_BATCH]
            )
        completed += batch.file_counts.completed
    wall = time.perf_counter() - began
    final = client.vector_stores.retrieve(store.id).file_counts.model_dump()
    client.close()
    return {"wall_s": round(wall, 2), "completed": completed, "file_counts": final, **counts(admin)}


def one_batch_refused(base_url: str, file_ids: list[str]) -> str | None:
    """What the SDK's single create_and_poll call does with all the ids (refused above 2,000)."""
    if len(file_ids) <= SDK_BATCH:
        return None
    client = openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
    store = client.vector_stores.create(name="bench-one-call")
    try:
        client.vector_stores.file_batches.create_and_poll(store.id, file_ids=file_ids)
    except openai.BadRequestError as exc:
        return f"HTTP 400: {exc.body.get('message') if isinstance(exc.body, dict) else exc}"
    finally:
        client.close()
    return "accepted"


def write_files(folder: Path, count: int) -> list[str]:
    """``count`` small text files."""
    paths = []
    for i in range(count):
        path = folder / f"bench-{i:05d}.txt"
        path.write_text(f"bench document {i}\n" * 8)
        paths.append(str(path))
    return paths


def main(argv: list[str] | None = None) -> None:
    """Run the modes asked for and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--modes", default="ids,upload", help="comma-separated: ids, upload")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    emulator = start_emulator(port)
    results: dict[str, Any] = {
        "files": args.files,
        "profile": PROFILE,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    try:
        admin = EmulatorAdmin(base_url)
        _wait_for(admin)
        with private_redis() as redis_url, tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "AJ_REDIS_URL": redis_url,
                "OPENAI_BASE_URL": base_url,
                "OPENAI_API_KEY": API_KEY,
                "PYTHONPATH": str(ROOT),
            }
            worker = start_worker(env, Path(tmp) / "worker.log")
            try:
                for mode in modes:
                    if mode == "ids":
                        ids = admin.create_files(args.files, prefix="bench")
                        results["ids"] = {
                            "ours": ours(env, admin, {"file_ids": ids}),
                            "sdk": sdk(base_url, admin, ids, []),
                            "sdk_one_call": one_batch_refused(base_url, ids),
                        }
                    elif mode == "upload":
                        paths = write_files(Path(tmp), args.files)
                        results["upload"] = {
                            "ours": ours(env, admin, {"paths": paths}),
                            "sdk": sdk(base_url, admin, [], paths),
                        }
            finally:
                worker.terminate()
                worker.wait(30)
    finally:
        emulator.terminate()
        emulator.wait(10)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def _wait_for(admin: EmulatorAdmin) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if admin.health():
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table."""
    lines = [
        f"Indexing {results['files']:,} files (emulator profile: index 1-10 s a file, poll-after 1 s)",
        "",
        "| inputs | side | wall time (s) | API requests | completed |",
        "|---|---|---:|---:|---:|",
    ]
    for mode, label in (("ids", "file ids"), ("upload", "local files")):
        if mode not in results:
            continue
        for side, name in (("ours", "assistant-jobs worker"), ("sdk", "SDK helper, per 2,000")):
            row = results[mode][side]
            done = (row.get("file_counts") or {}).get("completed")
            lines.append(f"| {label} | {name} | {row['wall_s']} | {row['requests']:,} | {done} |")
    one = results.get("ids", {}).get("sdk_one_call")
    if one:
        lines += ["", f"The SDK's single `create_and_poll` with all {results['files']:,} ids: {one}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
