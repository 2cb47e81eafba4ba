"""The poll loop in a process of its own, beside a worker's main process (`Settings.poll_process`).

Why a process: in the main process the loop's thread and Celery's consumer (which hands start messages to
the pool) share one interpreter lock, and at thousands of runs in flight the loop's retrieves starve the
consumer, so starts slow down exactly when many runs are out. Apart, each has a core's worth of time.

The child is forked while the worker is being built (`Keeper.prepare`, from the poll step's ``create``): then
the worker is still one thread, has forked no pool process and opened no broker connection, so the child holds
nothing of the consumer's, and it inherits the imports already made (a fresh interpreter spent about 1.5 s of
CPU making them again). It waits until the worker starts it, and a worker that never starts (a later step
refuses) takes it down as it goes. A child started again after it exited on its own is spawned (a fresh
interpreter with the parent's ``sys.path``): by then the worker runs threads, and a fork of them could hold a
lock no thread will release. Either way the child lives exactly as long as the worker: it stops on SIGTERM or
SIGINT (the worker's shutdown, or Ctrl-C reaching the process group) and when its parent goes away, however
that happened (a SIGKILLed worker: the kernel's parent-death signal on Linux, else a watch of the parent's
pid). It stops as the thread does, writing what it holds; a claim it could not settle falls due again when its
lease ends. Should it exit on its own (a crash, the OOM killer), the worker starts it again."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from worker import constants as c

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0
"""How long a worker's shutdown waits for its poll process to write what it holds before killing it."""
PARENT_CHECK_S = 1.0
"""How often the child looks for its parent where the kernel cannot signal the parent's death."""
RESTART_MAX_S = 30.0
"""Longest wait before starting again a poll loop process that exited on its own (it doubles from 1 s)."""
READY_WAIT_S = 60.0
"""Longest a starting worker waits for its poll loop to run before it says it is ready all the same."""
PR_SET_PDEATHSIG = 1
"""prctl's option asking for a signal when the parent dies (linux/prctl.h)."""


@dataclass(frozen=True)
class Parent:
    """What the poll loop's process takes from the worker that starts it."""

    pid: int
    log_level: int
    log_file: str | None
    """The worker's log file (Celery's ``--logfile``); None when it logs to stderr."""
    running: Any
    """A multiprocessing event the child sets once its loop is built and about to claim."""

    @classmethod
    def of_this_process(cls, running: Any) -> Parent:
        """This process, its root logger's level and file."""
        root = logging.getLogger()
        files = [h.baseFilename for h in root.handlers if isinstance(h, logging.FileHandler)]
        return cls(os.getpid(), root.getEffectiveLevel(), files[0] if files else None, running)


class Keeper:
    """Keeps the poll loop's process running beside the worker (`worker.app.PollerStep`): starts it, starts
    it again should it ever exit on its own (a crash, the OOM killer), and stops it with the worker."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        self.target = target
        """Run in the child as ``target(parent, *args)``, ``parent`` a `Parent`."""
        self.args = args
        self.process: BaseProcess | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a restart and a stop never cross
        self._thread: threading.Thread | None = None
        self._running: Any = None
        self._go: Any = None

    def prepare(self) -> None:
        """Fork the process now, held until `start`, if this process is one thread (else `start` spawns
        it). Call it before this process starts threads or forks anything else."""
        if threading.active_count() > 1:
            return
        self._go = multiprocessing.get_context("fork").Event()
        self.process = self._launch("fork")

    def start(self) -> None:
        """Start the process (let the prepared one go, or spawn one) and wait until its loop runs (so a
        worker that says it is ready polls), then the thread that watches it."""
        if self.process is None:
            self.process = self._launch("spawn")
        else:
            self._go.set()
        self._started(self.process, wait=True)
        self._thread = threading.Thread(target=self._watch, name="aj-poll-keeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Ask the process to stop (SIGTERM), wait up to ``timeout`` for it, then kill it."""
        with self._lock:
            self._stopping.set()
            proc = self.process
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout)
            if proc.is_alive():
                log.warning("the poll loop did not stop within %.0f s; killing it", timeout)
                proc.kill()
                proc.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def _launch(self, method: Literal["fork", "spawn"]) -> BaseProcess:
        """The loop's process, started by ``method``: forked, it waits until `_go` is set (`_when_let_go`);
        spawned, it runs the loop at once."""
        fork = method == "fork"
        context = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
        # Held here for the child's life: the child opens the event's semaphore after it starts, and a
        # semaphore nobody in the parent holds any more is gone by then.
        self._running = context.Event()
        parent = Parent.of_this_process(self._running)
        target, args = (
            (_when_let_go, (self._go, self.target, parent, *self.args))
            if fork
            else (self.target, (parent, *self.args))
        )
        proc = context.Process(target=target, args=args, name="aj-poll-loop", daemon=True)
        proc.start()
        return proc

    def _started(self, proc: BaseProcess, wait: bool) -> None:
        log.info("poll loop started in process %s", proc.pid)
        if wait and not _until_running(proc, self._running):
            log.warning("the poll loop's process %s is not running yet; the worker goes on", proc.pid)

    def _watch(self) -> None:
        delay = 1.0
        while self.process is not None:
            self.process.join()
            if self._stopping.wait(delay):
                return
            log.error(
                "the poll loop's process %s exited (code %s); starting it again",
                self.process.pid, self.process.exitcode,
            )  # fmt: skip
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = self._launch("spawn")
                self._started(self.process, wait=False)
            delay = min(delay * 2, RESTART_MAX_S)


def _when_let_go(go: Any, target: Callable[..., None], parent: Parent, *args: object) -> None:
    """The forked child: wait until the worker lets it go (or is gone), then run ``target`` with the signal
    handlers a fresh interpreter has (the worker's are its own)."""
    for signum in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, TypeError):
            if callable(signal.getsignal(signum)):
                signal.signal(
                    signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
                )
    _signal_on_parent_death(signal.SIGTERM)
    while not go.wait(PARENT_CHECK_S):
        if os.getppid() != parent.pid:
            return
    target(parent, *args)


def _until_running(proc: BaseProcess, running: Any) -> bool:
    """Wait until the child's loop runs (True), the child exits, or `READY_WAIT_S` pass."""
    deadline = time.monotonic() + READY_WAIT_S
    while not running.wait(0.1):
        if not proc.is_alive() or time.monotonic() > deadline:
            return False
    return True


def stop_event(parent: Parent) -> threading.Event:
    """In the child: logging where and as the worker logs, and an event set on SIGTERM, SIGINT or the
    worker's end."""
    logging.basicConfig(level=parent.log_level, format=c.SERVICE_LOG_FORMAT, filename=parent.log_file)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    _signal_on_parent_death(signal.SIGTERM)
    threading.Thread(
        target=_watch_parent, args=(parent.pid, stopping), name="aj-parent-watch", daemon=True
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
