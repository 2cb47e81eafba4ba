"""Which workers consume which queues, asked of the workers themselves (Celery's ``inspect
active_queues`` broadcast): how ``ajobs wait`` tells "no worker serves this job's queue" from "the job is
slow" when it runs out of time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ASK_TIMEOUT_S = 1.0
"""How long the workers have to answer."""


def consumers(app: Any, queues: Sequence[str], timeout: float = ASK_TIMEOUT_S) -> dict[str, list[str]]:
    """``queue -> names of the workers consuming it`` for each of ``queues`` (an empty list: none does).
    Raises the broker's error when the broker cannot be reached."""
    replies: dict[str, Any] = app.control.inspect(timeout=timeout).active_queues() or {}
    found: dict[str, list[str]] = {queue: [] for queue in queues}
    for worker, served in sorted(replies.items()):
        for queue in served or []:
            name = queue.get("name") if isinstance(queue, dict) else None
            if name in found:
                found[name].append(worker)
    return found


def describe(found: dict[str, list[str]]) -> str:
    """One clause about ``found``: which workers consume the queues, or which queues nobody consumes."""
    idle = [queue for queue, workers in found.items() if not workers]
    served = {queue: workers for queue, workers in found.items() if workers}
    if not served:
        listed = ",".join(found)
        plural = "s" if len(found) > 1 else ""
        return f"no worker consumes its queue{plural} {listed} (start one: ajobs worker -Q {listed})"
    parts = [f"{queue} by {', '.join(workers)}" for queue, workers in served.items()]
    line = f"its queues are consumed ({'; '.join(parts)})"
    if idle:
        line += f", but nobody consumes {', '.join(idle)}"
    return line
