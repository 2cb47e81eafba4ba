"""The seed pattern for background responses: ``responses.create(background=True)`` then
``responses.retrieve`` every second until the response ends, one thread per job (as OpenAI's
background-mode guide shows it).

    python -m bench.seed_responses --base-url URL --jobs N --threads T --out FILE

Runs in its own process so its CPU and memory are measured alone, on one shared ``openai.OpenAI`` client
(its defaults: at most 1,000 connections). Writes, per job, its response id, the wall-clock time the thread
saw the end and the status, as `bench.seed_pattern` does for runs.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import openai

from bench.seed_pattern import supervise_all

POLL_S = 1.0
"""The guide's poll interval."""
ACTIVE = ("queued", "in_progress")


def supervise(client: openai.OpenAI, index: int) -> dict[str, Any]:
    """One job, the way the guide writes it."""
    response = client.responses.create(model="gpt-4o", input=f"question {index}", background=True)
    while response.status in ACTIVE:
        time.sleep(POLL_S)
        response = client.responses.retrieve(response.id)
    return {"response_id": response.id, "end": time.time(), "status": response.status}


def main(argv: list[str] | None = None) -> None:
    """Supervise the jobs and write what each saw."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key)
    rows = supervise_all(args.jobs, args.threads, lambda i: supervise(client, i), "seed responses")
    with open(args.out, "w") as out:
        json.dump(rows, out)


if __name__ == "__main__":
    main()
