"""S1 supervision: N runs submitted at once, run durations spread over 5-60 s, for each contender.

Per contender and size: detection lag p50/p95/p99 (when the contender learnt of the end minus the
emulator's ``completed_at``), API requests per run (the emulator's counters), wall time to drain, CPU
seconds and peak RSS of the contender's processes. Contenders run one after another, never at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import contenders
from bench.common import SHARING, say, write_result

PROFILE = {"seed": 11, "run_duration": {"kind": "uniform", "min": 5.0, "max": 60.0}, "poll_after_ms": 1000}
"""The S1 emulator profile: runs of 5-60 s, the API's default poll hint of 1 s."""
TINY_PROFILE = {
    "seed": 11,
    "run_duration": {"kind": "uniform", "min": 0.5, "max": 1.0},
    "poll_after_ms": 1000,
}
"""For the smoke test only: the same code path in seconds."""
DEFAULT_POLICY: dict[str, str] = {}
"""The worker's own defaults (AJ_POLL_FIRST 1, FACTOR 1.5, CAP 2, JITTER 0.2)."""


@dataclass(frozen=True)
class Step:
    """One contender at one size (and, for ours, one poll policy)."""

    contender: str
    runs: int
    policy: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """A short name: ``ours 1,000 cap 4`` and so on."""
        cap = dict(self.policy).get("AJ_POLL_CAP")
        return f"{self.contender} {self.runs:,}" + (f" cap {cap}" if cap else "")


def cap(seconds: float) -> tuple[tuple[str, str], ...]:
    """The poll policy with ``AJ_POLL_CAP`` set to ``seconds`` (the rest at the worker's defaults)."""
    return (("AJ_POLL_CAP", f"{seconds:g}"),)


PLANS: dict[str, list[Step]] = {
    "tiny": [Step("ours", 20), Step("seed", 20), Step("naive", 20)],
    "quick": [Step("ours", 1000), Step("seed", 1000), Step("naive", 100)],
    "ours-10k": [Step("ours", 10_000)],
    "full": [
        Step("ours", 10_000),
        Step("ours", 1000),
        Step("ours", 1000, cap(1)),
        Step("ours", 1000, cap(4)),
        Step("seed", 100),
        Step("seed", 1000),
        Step("seed", 3000),
        Step("naive", 100),
        Step("naive", 200),
        Step("naive", 400),
    ],
}


def timeout_for(step: Step, profile: dict[str, Any]) -> float:
    """Seconds a step may take before its stragglers count as lost."""
    longest = float(profile["run_duration"]["max"])
    if step.contender == "naive":
        waves = -(-step.runs // 100)
        return waves * longest * 1.5 + 120
    return longest + 120 + step.runs / 25


def run_step(step: Step, profile: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run one step and summarise it."""
    say(f"S1 {step.label}: starting")
    timeout = timeout_for(step, profile)
    if step.contender == "ours":
        trial = contenders.ours(profile, step.runs, dict(step.policy), timeout, workdir)
    elif step.contender == "seed":
        trial = contenders.seed(profile, step.runs, timeout, workdir)
    else:
        trial = contenders.naive(profile, step.runs, timeout, workdir)
    row = contenders.summarise(trial)
    row["label"] = step.label
    say(
        f"S1 {step.label}: p95 lag {row['lag_s']['p95']} s, {row['requests_per_run']} requests/run, "
        f"{row['cpu_ms_per_run']} CPU-ms/run, lost {row['lost']}, wall {row['wall_s']} s"
    )
    return row


def main(mode: str, out: Path, command: str) -> dict[str, Any]:
    """Run the plan for ``mode`` and write ``out/s1_supervision.json``."""
    profile = TINY_PROFILE if mode == "tiny" else PROFILE
    workdir = contenders.trial_dir()
    rows = [run_step(step, profile, workdir) for step in PLANS[mode]]
    result = {
        "scenario": "s1_supervision",
        "mode": mode,
        "command": command,
        "emulator": {
            "profile": profile,
            "clock": "time.time() of the emulator process (same host clock as the contenders)",
        },
        "pinning": "emulator on core 0; Redis, the contender's processes and the bench's reader on "
        + ("both cores (sharing the emulator's)" if SHARING["cores"] else "core 1"),
        "policy_defaults": {
            "AJ_POLL_FIRST": 1.0,
            "AJ_POLL_FACTOR": 1.5,
            "AJ_POLL_CAP": 2.0,
            "AJ_POLL_JITTER": 0.2,
        },
        "rows": rows,
    }
    write_result(out, "s1_supervision", result)
    return result
