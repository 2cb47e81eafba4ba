"""The benchmark runner: ``python -m bench.runner --quick|--full [--only s1,s2,s3,s4] [--out DIR]``.

Starts what it needs itself (private Redis, an emulator process per contender, workers), prints progress
to stderr, writes ``<out>/<scenario>.json`` and the plots, and regenerates ``bench/RESULTS.md`` when
writing to ``bench/results``. ``--tiny`` is the smoke test's size: the same code paths in seconds.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from bench import plots, report, s1_supervision, s2_submit, s3_pickup, s4_capacity, s5_webhooks
from bench.common import RESULTS_DIR, contender_cores, say, share_cores

SCENARIOS = {
    "s1": s1_supervision.main,
    "s2": s2_submit.main,
    "s3": s3_pickup.main,
    "s4": s4_capacity.main,
    "s5": s5_webhooks.main,
}
"""Every scenario; S5 (minutes even at the quick size) runs only when named: ``--only s5``."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.runner", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", dest="mode", action="store_const", const="quick", help="under 5 minutes")
    size.add_argument("--full", dest="mode", action="store_const", const="full", help="under 30 minutes")
    size.add_argument("--tiny", dest="mode", action="store_const", const="tiny", help="smoke test sizes")
    size.add_argument(
        "--ours-10k", dest="mode", action="store_const", const="ours-10k", help="S1: ours, 10,000 runs"
    )
    parser.add_argument("--only", default="s1,s2,s3,s4", help="comma-separated scenarios (s1..s5)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--share-cores", action="store_true", help="the contender may use the emulator's core too"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the scenarios asked for, then the plots and the report."""
    args = parse(argv)
    if args.mode == "ours-10k":
        args.only = "s1"  # a single S1 step; the other scenarios have no such size
    command = "python -m bench.runner " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.share_cores:
        share_cores()
    # Everything this process starts (Redis, workers, the seed client) inherits the contender's core;
    # each emulator pins itself to its own.
    os.sched_setaffinity(0, contender_cores())
    began = time.monotonic()
    results = {}
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        results[name] = SCENARIOS[name](args.mode, args.out, command)
    if "s1" in results and not args.no_plots:
        if plots.available():
            for path in plots.s1_plots(results["s1"], args.out):
                say(f"plot written: {path}")
        else:
            say("matplotlib is not installed (the bench extra): plots skipped")
    if args.out.resolve() == RESULTS_DIR.resolve():
        say(f"report written: {report.write(args.out, RESULTS_DIR.parent / 'RESULTS.md')}")
    say(f"done in {time.monotonic() - began:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
