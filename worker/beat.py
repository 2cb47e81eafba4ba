"""Beat: the clean-up sweeps' schedule, built from the settings and kept in Redis by celery-redbeat.

``celery -A worker.app beat`` (``make beat``) runs it. Any number of beat processes may run on any hosts:
redbeat holds a lock in Redis, so one schedules and the others wait to take over, and each sweep fires
once a period. Why redbeat: the schedule and each entry's last run live in Redis beside everything else
(no local ``celerybeat-schedule`` file to lose with a host), and it is the scheduler Celery's docs point to
for this.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schemas.requests import CleanupTarget
from worker import constants as c
from worker.settings import Settings
from worker.store import keys

SWEEPS: dict[str, tuple[str, list[CleanupTarget]]] = {
    "cleanup-threads": ("sweep_threads_s", [CleanupTarget.THREADS, CleanupTarget.CONVERSATIONS]),
    "cleanup-stores": ("sweep_stores_s", [CleanupTarget.VECTOR_STORES]),
    "cleanup-files": ("sweep_files_s", [CleanupTarget.FILES]),
    "cleanup-jobs": ("sweep_jobs_s", [CleanupTarget.JOBS]),
}
"""Each scheduled sweep: its name, the setting holding its period, and the targets its job sweeps."""


def schedule(s: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule: one entry per sweep whose period is not 0, each submitting a clean-up job."""
    entries: dict[str, dict[str, Any]] = {}
    for name, (setting, targets) in SWEEPS.items():
        period = float(getattr(s, setting))
        if period <= 0:
            continue
        entries[name] = {
            "task": c.TASK_SCHEDULED_CLEANUP,
            "schedule": timedelta(seconds=period),
            "args": [[t.value for t in targets]],
            # A sweep message older than its period is stale: the next one supersedes it.
            "options": {"queue": s.queue_maintenance, "expires": period},
        }
    return entries


def beat_config(s: Settings) -> dict[str, Any]:
    """What ``app.conf`` needs for beat: redbeat as the scheduler, its keys and lock, the schedule."""
    return {
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "beat_schedule": schedule(s),
        # Celery 5.7 reads beat_max_loop_interval; earlier releases read beat_max_interval.
        "beat_max_loop_interval": s.beat_max_interval,
        "beat_max_interval": s.beat_max_interval,
        "redbeat_redis_url": s.redis_url,
        "redbeat_redis_options": {
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 15,
        },
        "redbeat_key_prefix": keys.BEAT_PREFIX,
        "redbeat_lock_key": keys.BEAT_PREFIX + "lock",
        # A beat that died holds the lock at most this long before a standby takes over.
        # It must outlast the longest sleep between ticks, each of which extends it.
        "redbeat_lock_timeout": int(max(s.beat_max_interval * 5, 5)),
    }
