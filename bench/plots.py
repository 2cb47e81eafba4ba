"""PNG plots where a picture says more than the table: the CDF of S1 detection lag per contender, and the
frontier of (API requests per run, p95 lag) points. Needs matplotlib (the ``bench`` extra); without it the
runner skips the plots and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {"ours": "tab:blue", "seed": "tab:orange", "naive": "tab:green"}
NAMES = {
    "ours": "assistant-jobs",
    "seed": "seed pattern (thread per run)",
    "naive": "naive Celery (100 threads)",
}


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def s1_plots(result: dict[str, Any], out: Path) -> list[Path]:
    """Write the lag CDF and the frontier plot for an S1 result; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["lags"]]
    written = []
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        lags = row["lags"]
        ys = [(i + 1) / len(lags) for i in range(len(lags))]
        style = "-" if row["contender"] == "ours" else "--"
        ax.plot(lags, ys, style, label=f"{row['label']} (p95 {row['lag_s']['p95']:.2f} s)")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("detection lag: contender learns of the end - emulator's completed_at (s)")
    ax.set_ylabel("share of runs")
    ax.set_title("S1: detection lag CDF, runs of 5-60 s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    path = out / "s1_lag_cdf.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        x, y = row["requests_per_run"], row["lag_s"]["p95"]
        ax.scatter([x], [y], color=COLOURS.get(row["contender"], "grey"), s=50)
        ax.annotate(row["label"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    for contender, name in NAMES.items():
        ax.scatter([], [], color=COLOURS[contender], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("API requests per run")
    ax.set_ylabel("p95 detection lag (s)")
    ax.set_title("S1: the frontier of requests per run against p95 lag")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path = out / "s1_frontier.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
