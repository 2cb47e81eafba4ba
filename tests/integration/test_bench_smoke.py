"""The benchmark code cannot rot: the runner at its tiny size (tens of runs of under a second), every
scenario and every contender, into a scratch directory. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_tiny_bench_writes_one_figure_per_contender(tmp_path: Path) -> None:
    # Given a scratch results directory
    out = tmp_path / "results"

    # When the runner runs every scenario at the tiny size
    done = subprocess.run(
        [sys.executable, "-m", "bench.runner", "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )

    # Then it succeeds and each scenario's results file holds its figures
    assert done.returncode == 0, done.stderr[-3000:]
    s1 = json.loads((out / "s1_supervision.json").read_text())
    rows = {row["contender"]: row for row in s1["rows"]}
    assert set(rows) == {"ours", "seed", "naive"}
    for row in rows.values():
        assert row["lost"] == 0, row
        assert row["detected"] == row["runs"] == 20
        assert row["lag_s"]["p95"] is not None and row["requests_per_run"] > 0
    assert s1["emulator"]["profile"]["seed"] is not None and s1["machine"]["cores"]
    s2 = json.loads((out / "s2_submit.json").read_text())
    assert s2["submit_many_jobs"] == 50 and s2["submit_latency_ms"]["p99"] > 0
    s3 = json.loads((out / "s3_pickup.json").read_text())
    assert s3["events"] == 50 and s3["pickup_ms"]["p99"] is not None
    s4 = json.loads((out / "s4_emulator.json").read_text())
    assert s4["retrieves_per_s"] > 0
    # And progress was shown while it ran
    assert "[bench] ours 20:" in done.stderr
