"""Sending Celery messages through the outbox, so no message is ever lost between a state change and the
broker, and every message in flight is visible on the schedule.

A send stages each job's entry (`worker.polls.TaskDue`) due after a grace period, publishes the message,
then parks the entries as carried by it. If the publish fails (the broker is down) or the sender dies
before parking, the entries fall due and the poll loop sends the message instead; a duplicate is harmless,
every step being idempotent. The task that runs the message gives each job its next entry (or clears the
parked one, see `worker.store.schedule`).

Every task's first argument names its jobs: a job id, or a list of job ids (start messages carry many).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from worker.polls import TaskDue

if TYPE_CHECKING:
    from worker.store.schedule import AsyncSchedule, Schedule

Publish = Callable[[str, list[Any], str], None]
"""Publishes Celery task ``name`` with ``args`` under task id ``task_id``."""
APublish = Callable[[str, list[Any], str], Awaitable[None]]
"""`Publish` for asyncio: it must not block the loop (kombu is synchronous: send from a thread)."""


def job_ids_of(args: Sequence[Any]) -> list[str]:
    """The job ids a message's arguments carry (its first argument: one id or a list of them; a list of
    ``[job id, ...]`` pairs for the batched finish)."""
    if not args:
        return []
    first = args[0]
    if isinstance(first, str):
        return [first]
    if isinstance(first, list | tuple):
        return [item if isinstance(item, str) else str(item[0]) for item in first]
    return []


def per_job(task: str, args: Sequence[Any]) -> dict[str, TaskDue]:
    """The entry that would send ``task`` for each job of ``args`` alone."""
    first = args[0]
    if isinstance(first, list | tuple):
        return {job_id: TaskDue(task, [[job_id], *args[1:]]) for job_id in job_ids_of(args)}
    return {str(first): TaskDue(task, list(args))}


class Dispatcher:
    """Sends messages through the outbox (see the module docstring)."""

    def __init__(self, schedule: Schedule, publish: Publish, grace_s: float):
        self.schedule = schedule
        self.publish = publish
        self.grace_s = grace_s

    def send(self, task: str, args: list[Any]) -> str:
        """Stage, publish and park ``task`` with ``args``; the message's task id. A failed publish raises,
        and the staged entries send it later."""
        task_id = new_task_id()
        entries = per_job(task, args)
        token = self.schedule.stage(entries, task_id, self.grace_s)
        self.publish(task, args, task_id)
        self.schedule.park(entries, token, task_id)
        return task_id

    def sent(self, task: str, args: list[Any], task_id: str, job_ids: Sequence[str], token: int) -> None:
        """Publish a message whose entries were staged by a store script (a thread's handover, a submit)
        and park them."""
        self.publish(task, args, task_id)
        self.schedule.park(job_ids, token, task_id)


class AsyncDispatcher:
    """`Dispatcher` for asyncio producers. With ``publish`` None nothing is published: the staged entries
    fall due after ``grace_s`` and a worker's poll loop sends them (relay mode; a grace of 0 makes that
    the next pass of the loop)."""

    def __init__(self, schedule: AsyncSchedule, publish: APublish | None, grace_s: float):
        self.schedule = schedule
        self.publish = publish
        self.grace_s = grace_s

    async def send(self, task: str, args: list[Any]) -> str:
        """Stage, publish and park ``task`` with ``args``; the message's task id."""
        task_id = new_task_id()
        entries = per_job(task, args)
        token = await self.schedule.stage(entries, task_id, self.grace_s)
        if self.publish is not None:
            await self.publish(task, args, task_id)
            await self.schedule.park(entries, token, task_id)
        return task_id

    async def sent(
        self, task: str, args: list[Any], task_id: str, job_ids: Sequence[str], token: int
    ) -> None:
        """Publish a message whose entries a store script staged (a submit) and park them."""
        if self.publish is not None:
            await self.publish(task, args, task_id)
            await self.schedule.park(job_ids, token, task_id)


def new_task_id() -> str:
    """A fresh Celery task id (chosen before the send, so the outbox can name the message)."""
    return str(uuid.uuid4())
