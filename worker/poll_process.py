"""The poll loop in a process of its own, beside a worker's main process (`Settings.poll_process`).

Why a process: in the main process the loop's thread and Celery's consumer (which hands start messages to
the pool) share one interpreter lock, and at thousands of runs in flight the loop's retrieves starve the
consumer, so starts slow down exactly when many runs are out. Apart, each has a core's worth of time.

The child is started with multiprocessing's ``spawn`` (a fresh interpreter with the parent's ``sys.path``,
nothing of the consumer's threads or connections) and lives exactly as long as the worker: it stops on
SIGTERM or SIGINT (the worker's shutdown, or Ctrl-C reaching the process group) and when its parent goes
away, however that happened (a SIGKILLed worker: the kernel's parent-death signal on Linux, else a watch of
the parent's pid). It stops as the thread does, writing what it holds; a claim it could not settle falls due
again when its lease ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0
"""How long a worker's shutdown waits for its poll process to write what it holds before killing it."""
PARENT_CHECK_S = 1.0
"""How often the child looks for its parent where the kernel cannot signal the parent's death."""
PR_SET_PDEATHSIG = 1
LOG_FORMAT = "[%(asctime)s: %(levelname)s/poll-loop] %(message)s"


def start(target: Callable[..., None], *args: object) -> BaseProcess:
    """Start ``target(parent_pid, loglevel, *args)`` in a spawned child; the child process."""
    level = logging.getLogger().getEffectiveLevel()
    proc = multiprocessing.get_context("spawn").Process(
        target=target, args=(os.getpid(), level, *args), name="aj-poll-loop", daemon=True
    )
    proc.start()
    log.info("poll loop started in process %s", proc.pid)
    return proc


def stop(proc: BaseProcess, timeout: float = STOP_WAIT_S) -> None:
    """Ask the child to stop (SIGTERM), wait up to ``timeout`` for it, then kill it."""
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout)
    if proc.is_alive():
        log.warning("the poll loop did not stop within %.0f s; killing it", timeout)
        proc.kill()
        proc.join(timeout)


def stop_event(parent_pid: int, level: int) -> threading.Event:
    """In the child: logging like the worker's, and an event set on SIGTERM, SIGINT or the parent's end."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    _signal_on_parent_death(signal.SIGTERM)
    threading.Thread(
        target=_watch_parent, args=(parent_pid, stopping), name="aj-parent-watch", daemon=True
    ).start()
    return stopping


def _signal_on_parent_death(signum: int) -> None:
    """Ask the kernel for ``signum`` when the parent dies (Linux; elsewhere the watch alone does it)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)


def _watch_parent(parent_pid: int, stopping: threading.Event) -> None:
    # A parent that died before the kernel was asked is caught here too: the child is then re-parented.
    while not stopping.wait(PARENT_CHECK_S):
        if os.getppid() != parent_pid:
            log.warning("the worker (pid %s) is gone; the poll loop stops", parent_pid)
            stopping.set()
