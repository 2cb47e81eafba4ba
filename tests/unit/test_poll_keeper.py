"""The poll loop's keeper forks the loop's process while the worker is built and lets it run only at start:
a worker that never starts leaves no loop behind, and one that starts runs its loop in that very process.

Each case runs in a fresh interpreter of its own, as a worker's main process is: one thread (the test
process's xdist threads would make the keeper spawn instead)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

SCRIPT = """
import json, os, sys, time
from pathlib import Path
from worker.poll_process import Keeper

marker = Path(sys.argv[1])

def loop(parent, path):
    Path(path).write_text(str(os.getpid()))
    parent.running.set()
    while True:
        time.sleep(0.05)

keeper = Keeper(loop, str(marker))
keeper.prepare()
prepared = keeper.process.pid if keeper.process else None
if sys.argv[2] == "start":
    keeper.start()
keeper.stop()
print(json.dumps({"prepared": prepared, "ran_in": int(marker.read_text()) if marker.exists() else None,
                  "alive": keeper.process.is_alive()}))
"""


def run_keeper(tmp_path: Path, then: str) -> dict[str, int | None]:
    """Prepare a keeper in a fresh process, then ``start`` it or not, then stop it; what happened."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "ran"), then],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, int | None] = json.loads(done.stdout)
    return result


def test_a_worker_that_never_starts_stops_its_prepared_loop_before_it_ran(tmp_path: Path) -> None:
    # Given a keeper that forked the loop's process while the worker was built
    # When the worker stops without having started (a later step refused it)
    result = run_keeper(tmp_path, "stop")
    # Then the process had been forked, never ran the loop, and is gone
    assert result["prepared"] is not None
    assert result["ran_in"] is None
    assert result["alive"] is False


def test_a_started_worker_runs_its_loop_in_the_process_forked_while_it_was_built(tmp_path: Path) -> None:
    # Given a keeper that forked the loop's process while the worker was built
    # When the worker starts, then stops
    result = run_keeper(tmp_path, "start")
    # Then the loop ran in that very process (no second one was spawned), which stopped with the worker
    assert result["ran_in"] == result["prepared"] is not None
    assert result["alive"] is False
