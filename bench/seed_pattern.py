"""The seed pattern: ``runs.create_and_poll`` in a ``ThreadPoolExecutor``, one thread per run in flight.

    python -m bench.seed_pattern --base-url URL --assistant ID --runs N --threads T --out FILE

Runs in its own process so its CPU and memory are measured alone. Each run is ``threads.create`` (with the
question) then ``runs.create_and_poll`` on one shared ``openai.OpenAI`` client (its defaults: at most
1,000 connections, poll interval from ``openai-poll-after-ms``). Writes, per run, its id, the wall-clock
time ``create_and_poll`` returned and the status.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from tasks.assistants import quiet_assistants_deprecation


def supervise(client: openai.OpenAI, assistant_id: str, index: int) -> dict[str, Any]:
    """One run, the way the seed wrote it."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": f"question {index}"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    return {"run_id": run.id, "end": time.time(), "status": run.status}


def main(argv: list[str] | None = None) -> None:
    """Supervise the runs and write what each returned."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--assistant", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    quiet_assistants_deprecation()  # the pattern as written calls the Assistants API: no warning per call
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key)
    rows = supervise_all(
        args.runs, args.threads, lambda i: supervise(client, args.assistant, i), "seed pattern"
    )
    with open(args.out, "w") as out:
        json.dump(rows, out)


def supervise_all(
    count: int, threads: int, one: Callable[[int], dict[str, Any]], label: str
) -> dict[str, Any]:
    """``one(i)`` for ``i`` in ``range(count)`` on a pool of ``threads`` threads, with a progress line every
    5 s; ``{"runs": what each returned, "errors": the first 20 errors, "error_count": how many}``."""
    done: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def guarded(index: int) -> None:
        try:
            row = one(index)
        except Exception as exc:  # a lost run is a result here, not a crash of the bench
            with lock:
                errors.append(repr(exc))
            return
        with lock:
            done.append(row)

    began = last = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(guarded, i) for i in range(count)]
        while not all(f.done() for f in futures):
            time.sleep(0.5)
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                print(
                    f"[bench] {label}: {len(done):,}/{count:,} done, {last - began:5.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return {"runs": done, "errors": errors[:20], "error_count": len(errors)}


if __name__ == "__main__":
    main()
