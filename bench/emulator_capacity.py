"""How many run retrieves a second the emulator serves on one core.

Starts the emulator as a separate process pinned to one core, creates N runs that stay in flight, then
drives `GET /v1/threads/{thread_id}/runs/{run_id}` from a load generator in another process (aiohttp, many
concurrent connections) for a fixed time, and reports retrieves/second.

    .venv/bin/python bench/emulator_capacity.py [--runs 10000] [--seconds 10] [--concurrency 64]

Writes bench/results/s4_emulator.json with the raw figures and the machine's facts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from emulator.admin_client import EmulatorAdmin

API_KEY = "sk-bench"
RESULTS = Path(__file__).parent / "results" / "s4_emulator.json"
# Runs long enough that all of them stay in flight for the whole measurement, as in the benchmark.
PROFILE = {
    "seed": 1,
    "run_duration": {"kind": "uniform", "min": 300, "max": 600},
    "response_duration": {"kind": "uniform", "min": 300, "max": 600},
    "poll_after_ms": 1000,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_emulator(port: int, core: int) -> subprocess.Popen[bytes]:
    """`python -m emulator` in its own process, pinned to `core`."""
    env = {**os.environ, "AJ_EMULATOR_PROFILE": json.dumps(PROFILE)}
    command = [sys.executable, "-m", "emulator", "--port", str(port), "--api-key", API_KEY]
    return subprocess.Popen(
        command, env=env, preexec_fn=lambda: os.sched_setaffinity(0, {core}), cwd=Path(__file__).parent.parent
    )


async def create_runs(base: str, count: int, concurrency: int = 64) -> list[tuple[str, str]]:
    """Create `count` threads with one run each; returns (thread_id, run_id) pairs."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{base}/assistants", json={"model": "gpt-4o"}) as response:
            assistant_id = (await response.json())["id"]
        pairs: list[tuple[str, str]] = []
        semaphore = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            async with semaphore:
                body = {"messages": [{"role": "user", "content": f"question {index}"}]}
                async with session.post(f"{base}/threads", json=body) as response:
                    thread_id = (await response.json())["id"]
                run_body = {"assistant_id": assistant_id, "metadata": {"aj_job_id": f"job-{index}"}}
                async with session.post(f"{base}/threads/{thread_id}/runs", json=run_body) as response:
                    pairs.append((thread_id, (await response.json())["id"]))

        await asyncio.gather(*(one(i) for i in range(count)))
        return pairs


async def drive_creates(base: str, count: int, concurrency: int) -> dict[str, Any]:
    """Start ``count`` background responses the way a job start does (a conversation, then the response on
    it), ``concurrency`` at a time; the time taken and the errors."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    errors = 0
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def one(index: int) -> None:
            nonlocal errors
            async with semaphore:
                async with session.post(f"{base}/conversations", json={}) as response:
                    conversation = (await response.json()).get("id")
                body = {
                    "model": "gpt-4o",
                    "input": f"question {index}",
                    "background": True,
                    "conversation": conversation,
                    "metadata": {"aj_job_id": f"job-{index}"},
                }
                async with session.post(f"{base}/responses", json=body) as response:
                    await response.read()
                    errors += response.status != 200

        began = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.monotonic() - began
    return {"starts": count, "errors": errors, "elapsed_s": elapsed}


def _creates_process(base: str, count: int, concurrency: int, core: int, queue: Any) -> None:
    os.sched_setaffinity(0, {core})
    queue.put(asyncio.run(drive_creates(base, count, concurrency)))


async def _drive(base: str, pairs: list[tuple[str, str]], seconds: float, concurrency: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    done = errors = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def worker(offset: int) -> None:
            nonlocal done, errors
            index = offset
            while time.monotonic() < deadline:
                thread_id, run_id = pairs[index % len(pairs)]
                index += concurrency
                started = time.perf_counter()
                async with session.get(f"{base}/threads/{thread_id}/runs/{run_id}") as response:
                    body = await response.read()
                    if response.status == 200 and body:
                        done += 1
                    else:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "retrieves": done,
        "errors": errors,
        "elapsed_s": elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
    }


def _load_process(
    base: str, pairs: list[tuple[str, str]], seconds: float, concurrency: int, core: int, queue: Any
) -> None:
    os.sched_setaffinity(0, {core})
    queue.put(asyncio.run(_drive(base, pairs, seconds, concurrency)))


def _versions() -> dict[str, str]:
    names = ("uvicorn", "starlette", "httptools", "uvloop", "orjson", "aiohttp", "openai")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def main() -> None:
    """Run the measurement and write the results file."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000, help="runs held in flight")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement length")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent connections per load process")
    parser.add_argument("--load-processes", type=int, default=1)
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    load_cores = [c for c in cores if c != server_core] or [server_core]
    port = _free_port()
    base = f"http://127.0.0.1:{port}/v1"
    server = start_emulator(port, server_core)
    try:
        admin = EmulatorAdmin(base)
        for _ in range(200):
            try:
                if admin.health():
                    break
            except OSError:
                time.sleep(0.05)
        created = time.monotonic()
        pairs = asyncio.run(create_runs(base, args.runs))
        create_s = time.monotonic() - created
        admin.reset_counters()
        queue: Any = multiprocessing.get_context("fork").Queue()
        loaders = [
            multiprocessing.get_context("fork").Process(
                target=_load_process,
                args=(base, pairs, args.seconds, args.concurrency, load_cores[i % len(load_cores)], queue),
            )
            for i in range(args.load_processes)
        ]
        for loader in loaders:
            loader.start()
        parts = [queue.get() for _ in loaders]
        for loader in loaders:
            loader.join()
        served = admin.counters()["route_statuses"].get("GET /v1/threads/{thread_id}/runs/{run_id}", {})
    finally:
        server.terminate()
        server.wait(timeout=10)

    retrieves = sum(p["retrieves"] for p in parts)
    elapsed = max(p["elapsed_s"] for p in parts)
    rate = retrieves / elapsed
    result = {
        "benchmark": "s4_emulator: run retrieves per second, emulator pinned to one core",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "retrieves_per_s": round(rate, 1),
        "runs_in_flight": len(pairs),
        "run_create_s": round(create_s, 2),
        "runs_created_per_s": round(len(pairs) / create_s, 1),
        "seconds": args.seconds,
        "concurrency_per_process": args.concurrency,
        "load_processes": parts,
        "server_counted": served,
        "machine": {
            "cores": os.cpu_count(),
            "server_core": server_core,
            "load_cores": load_cores,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": _versions(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{rate:,.0f} run retrieves/s on one core "
        f"({retrieves} in {elapsed:.1f} s, {len(pairs)} runs in flight)"
    )
    print(f"p50 {parts[0]['p50_ms']:.2f} ms, p99 {parts[0]['p99_ms']:.2f} ms; written to {RESULTS}")


if __name__ == "__main__":
    main()
