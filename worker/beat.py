"""Beat: the clean-up sweeps' schedule, built from the settings and kept in Redis by celery-redbeat.

``celery -A worker.app beat`` (``make beat``) runs it. Any number of beat processes may run on any hosts:
redbeat holds a lock in Redis, so one schedules and the others wait to take over, and each sweep fires
once a period. Why redbeat: the schedule and each entry's last run live in Redis beside everything else
(no local ``celerybeat-schedule`` file to lose with a host), and it is the scheduler Celery's docs point to
for this.

`Scheduler` is redbeat's scheduler made to ride out Redis outages. redbeat lets a connection error out of a
tick (extending the lock, reading the schedule) and Celery's beat exits on it, so one Redis restart stopped
the sweeps on every beat, standbys included, until someone restarted them.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
from celery.signals import beat_init
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, acquire_distributed_beat_lock, get_redis

from schemas.requests import CleanupTarget
from worker import connections
from worker import constants as c
from worker.settings import Settings
from worker.store import keys

log = logging.getLogger("celery.beat")

REDIS_DOWN: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
"""What Redis raises while it is away (a refused or dropped connection, a timeout, still loading its data)."""
RELEASE_ERRORS: tuple[type[Exception], ...] = (*REDIS_DOWN, redis.exceptions.LockError)
"""What releasing the lock at exit raises when Redis is away or the lock lapsed meanwhile."""
FIRST_RETRY_S = 0.5
"""Seconds before beat first tries Redis again after losing it; each further try waits twice as long..."""
RETRY_CAP_S = 5.0
"""...but never longer than this, nor than beat's longest sleep (``AJ_BEAT_MAX_INTERVAL``)."""

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


def retry_delay(failures: int, max_interval: float) -> float:
    """Seconds to wait after the ``failures``-th tick in a row that found Redis away."""
    cap = max(min(RETRY_CAP_S, max_interval), FIRST_RETRY_S)
    return float(min(FIRST_RETRY_S * 2 ** min(max(failures - 1, 0), 16), cap))


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler, riding out Redis outages instead of exiting.

    A tick (or the start) that finds Redis away logs once per outage and tries again after `retry_delay`.
    When Redis answers again this beat carries on with its lock if it still holds it, else takes the lock
    again or, when another beat took it meanwhile, waits as a standby; and whichever beat holds the lock
    writes the static schedule again, since Redis may have come back without its data (the entries' last
    runs are kept when they survived).

    The lock is taken in the tick, without waiting: redbeat's own ``beat_init`` handler blocks a standby
    inside the signal until the lock is free, where an outage escapes as a logged traceback and leaves
    the beat without a lock, so this scheduler disconnects it.
    """

    lock: Any  # redbeat's: the held redis-py Lock, or None
    _down_since: float | None = None
    _failures = 0
    # Write the static schedule again before the next tick this beat makes holding the lock: at its first
    # (a standby that waited may find Redis emptied meanwhile), and after every outage.
    _reinstall = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        beat_init.disconnect(acquire_distributed_beat_lock)

    def setup_schedule(self) -> None:
        """Write the static schedule into Redis; when Redis is away, leave it to the first tick that finds
        it back."""
        try:
            super().setup_schedule()
        except REDIS_DOWN as exc:
            self._went_away(exc)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One pass over the schedule; returns the seconds to sleep before the next."""
        try:
            interval = self._tick(*args, **kwargs)
        except REDIS_DOWN as exc:
            return self._went_away(exc)
        if self._down_since is not None:
            log.warning("beat: Redis is back after %.1f s", time.monotonic() - self._down_since)
            self._down_since, self._failures = None, 0
        return interval

    def _tick(self, *args: Any, **kwargs: Any) -> float:
        if self.lock_key and self.lock is None:
            if not self._take_lock():
                return float(self.max_interval)  # another beat holds it: wait as a standby
            self._reinstall = True
        if self._reinstall:
            super().setup_schedule()
            self._reinstall = False
        try:
            return float(super().tick(*args, **kwargs))
        except redis.exceptions.LockError:
            # It lapsed while Redis was away (or came back empty), and another beat may hold it now.
            log.warning("beat: lost the lock %s; taking it again when it is free", self.lock_key)
            self.lock = None
            return FIRST_RETRY_S

    def _take_lock(self) -> bool:
        """Take the lock without waiting, as redbeat does at start (with its extend-to script)."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        if not lock.acquire(blocking=False):
            return False
        log.info("beat: Acquired lock")
        self.lock = lock
        return True

    def _went_away(self, exc: Exception) -> float:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error(
                "beat: Redis unreachable (%s: %s); no sweep fires until it is back, retrying every few s",
                type(exc).__name__, exc,
            )  # fmt: skip
        self._failures += 1
        self._reinstall = True
        return retry_delay(self._failures, float(self.max_interval))

    def close(self) -> None:
        """Release the lock if Redis answers (else it lapses by itself), then close as redbeat does."""
        try:
            super().close()
        except RELEASE_ERRORS as exc:
            log.warning("beat: could not release the lock (%s); it lapses in %s s", exc, self.lock_timeout)
            self.lock = None
            super().close()


def url_without_credentials(url: str) -> str:
    """``url`` with any user and password taken out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)) if parts.netloc else url


def credentials_of(url: str) -> dict[str, str]:
    """The user and password a Redis URL carries, as redis-py options."""
    parts = urlsplit(url)
    found = {"username": unquote(parts.username or ""), "password": unquote(parts.password or "")}
    return {k: v for k, v in found.items() if v}


def redbeat_connection(s: Settings) -> dict[str, Any]:
    """redbeat's connection settings for the store's Redis, from the options every client of the system
    uses (`worker.connections`): a server (TLS included) as its URL and the client's options, a Sentinel
    group as redbeat takes one (a ``redis-sentinel://`` URL, the sentinels and the group in the options)."""
    # Passwords go in the options, never the URL: Celery shows its configuration (Flower's worker page)
    # with secrets masked only where a key's name says so; nested under "password" a value is masked, in a
    # URL under "redbeat_redis_url" it would show.
    tls = connections.tls_options(s) if connections.uses_tls(s) else None
    if not connections.is_sentinel(s.redis_url):
        url = connections.direct_url(s, s.redis_url)
        return {
            "redbeat_redis_url": url_without_credentials(url),
            "redbeat_redis_options": {**connections.redis_options(s), **credentials_of(url)},
            "redbeat_redis_use_ssl": tls,
        }
    group = connections.sentinel_group(s.redis_url)
    options: dict[str, Any] = {
        "sentinels": group.sentinels,
        "service_name": s.redis_sentinel_master,
        "db": group.db,
        "password": group.password,
        "socket_timeout": connections.SOCKET_TIMEOUT_S,
        "sentinel_kwargs": connections.sentinel_options(s),
    }
    if group.username:
        options["username"] = group.username
    return {
        "redbeat_redis_url": url_without_credentials(
            "redis-sentinel://" + s.redis_url.split(";")[0].removeprefix("sentinel://")
        ),
        "redbeat_redis_options": options,
        "redbeat_redis_use_ssl": tls,
    }


def beat_config(s: Settings) -> dict[str, Any]:
    """What ``app.conf`` needs for beat: redbeat as the scheduler, its keys and lock, the schedule."""
    return {
        "beat_scheduler": "worker.beat:Scheduler",
        "beat_schedule": schedule(s),
        # Celery 5.7 reads beat_max_loop_interval; earlier releases read beat_max_interval.
        "beat_max_loop_interval": s.beat_max_interval,
        "beat_max_interval": s.beat_max_interval,
        **redbeat_connection(s),
        "redbeat_key_prefix": keys.BEAT_PREFIX,
        "redbeat_lock_key": keys.BEAT_PREFIX + "lock",
        # A beat that died holds the lock at most this long before a standby takes over.
        # It must outlast the longest sleep between ticks, each of which extends it.
        "redbeat_lock_timeout": int(max(s.beat_max_interval * 5, 5)),
    }
