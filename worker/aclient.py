"""The producer client for asyncio: `AsyncJobs`, the same surface as `worker.client.Jobs`, awaited.

async with AsyncJobs() as jobs:
    ref = await jobs.submit({"kind": "run", "model": "gpt-4o", "messages": [...]})
    record = await jobs.wait(ref.id, timeout=60)
    async for event in jobs.events("$", follow=True):
        ...

Nothing it does blocks the event loop. Redis is ``redis.asyncio`` (`worker.store.aio`, the same scripts and
keys as the synchronous store). Requests are checked in a thread (an indexing job's paths are looked at on
disk). kombu, which publishes the start messages, is synchronous, so there are two ways to send them:

- by default each message is published from a thread of the client's own (one, so sends keep their order),
  as soon as the job is written: the same latency as `Jobs`;
- ``relay=True`` publishes nothing: the job and its start are written to the outbox due at once, and a
  worker's poll loop sends the start on its next pass (tens of milliseconds while workers run). The
  producer then never imports Celery or needs the broker; a submit costs one Redis round trip.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from schemas.job import JobEvent, JobRecord, JobStatus
from worker import constants as c
from worker.client import PRODUCER_PUBLISH_RETRY
from worker.dispatch import AsyncDispatcher
from worker.problems import check_redis_url
from worker.producer import (
    JobRef,
    Send,
    cancel_change,
    needs_cancel_task,
    new_record,
    outputs_change,
    parse_outputs,
    plan,
    prepare,
    retry_request,
    waited,
)
from worker.settings import Settings, get_settings, mask_url_passwords
from worker.store import JobNotFound
from worker.store.aio import AsyncStore

if TYPE_CHECKING:
    from celery import Celery

    from worker.producer import AnyRequest, OutputLike, RequestLike
    from worker.producer_uploads import UploadProgress

log = logging.getLogger(__name__)

FOLLOW_BLOCK_MS = 5000
"""How long one read of a followed event stream blocks (it reads again at once; only a bound)."""


class AsyncJobs:
    """Submit and follow jobs from asyncio (see the module docstring). An async context manager
    (`close`). One per event loop: its Redis connections belong to the loop that first used them.

    ``relay``: leave sending the start messages to the workers' poll loop (no broker, no Celery here).
    ``check_paths``: as for `worker.client.Jobs`.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        celery: Celery | None = None,
        relay: bool = False,
        check_paths: bool = True,
    ):
        self.settings = settings or get_settings()
        s = self.settings
        check_redis_url(s.redis_url)
        client = aioredis.Redis.from_url(
            s.redis_url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=15
        )
        self.store = AsyncStore.on(
            client, result_ttl=s.result_ttl, idempotency_ttl=s.idempotency_ttl, events_maxlen=s.events_maxlen
        )
        self.relay = relay
        self.check_paths = check_paths
        self._celery = celery
        self._own_celery = celery is None
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="aj-publish")
        self._closed = False
        self.grace = 0.0 if relay else s.outbox_grace
        """Seconds a staged start waits for this client before a worker's poll loop sends it."""
        self.dispatcher = AsyncDispatcher(self.store.schedule, None if relay else self._publish, self.grace)

    async def close(self) -> None:
        """Close the Redis connections and the sending thread (and the Celery app it built); once."""
        if self._closed:
            return
        self._closed = True
        await self.store.aclose()
        celery, self._celery = self._celery, None
        own = self._own_celery

        def shut() -> None:
            if own and celery is not None:
                celery.close()

        await asyncio.get_running_loop().run_in_executor(self._sender, shut)
        self._sender.shutdown(wait=False)

    aclose = close

    async def __aenter__(self) -> AsyncJobs:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- sending, off the loop --------------------------------------------------------------
    def _publish_blocking(self, name: str, args: list[Any], task_id: str) -> None:
        # Runs in the sending thread: the app (and Celery's import) is built there on first use.
        if self._celery is None:
            from worker.celery_config import producer_app

            self._celery = producer_app(self.settings)
        self._celery.send_task(name, args=args, task_id=task_id, retry_policy=PRODUCER_PUBLISH_RETRY)

    async def _publish(self, name: str, args: list[Any], task_id: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._sender, self._publish_blocking, name, args, task_id)

    # --- submit ---------------------------------------------------------------------------
    async def submit(
        self, request: RequestLike, *, upload: bool = False, on_upload: UploadProgress | None = None
    ) -> JobRef:
        """`Jobs.submit`, awaited (``upload``: the files are uploaded from here, with the async SDK)."""
        if upload:
            return await self._submit_uploading(request, on_upload)
        return (await self.submit_many([request]))[0]

    async def submit_many(self, requests: Iterable[RequestLike]) -> builtins.list[JobRef]:
        """`Jobs.submit_many`, awaited: checked in a thread, written in one round trip, started."""
        given = builtins.list(requests)
        checked = await asyncio.to_thread(self._prepare_all, given)
        return await self._write([new_record(r, self.settings) for r in checked])

    def _prepare_all(self, requests: Sequence[RequestLike]) -> builtins.list[AnyRequest]:
        return [prepare(r, self.settings, check_paths=self.check_paths) for r in requests]

    async def _write(self, records: Sequence[JobRecord]) -> builtins.list[JobRef]:
        planned = plan(records)
        submitted = await self.store.jobs.submit(planned.jobs, self.grace)
        for send in planned.sends(submitted):
            await self._send_start(send, submitted.token)
        return [JobRef(job_id, created) for job_id, created in submitted.results]

    async def _send_start(self, send: Send, token: int) -> None:
        try:
            await self.dispatcher.sent(send.task, send.args, send.task_id, send.job_ids, token)
        except Exception as exc:  # the broker is down: the outbox sends them later
            log.warning(
                "the broker (AJ_BROKER_URL, or AJ_REDIS_URL when unset) could not be reached (%s); the "
                "%d job(s) are accepted and a worker sends their start once the broker answers, "
                "%g s (AJ_OUTBOX_GRACE) after the submit at the earliest",
                mask_url_passwords(str(exc)),
                len(send.job_ids),
                self.grace,
            )

    async def _submit_uploading(self, request: RequestLike, on_upload: UploadProgress | None) -> JobRef:
        from schemas.requests import VectorStoreBatchRequest
        from worker import producer_uploads as up

        checked = (await asyncio.to_thread(self._prepare_all, [request]))[0]
        record = new_record(checked, self.settings)
        if not isinstance(checked, VectorStoreBatchRequest) or not checked.paths:
            return (await self._write([record]))[0]
        client = up.async_openai_client(self.settings)
        uploaded: dict[str, str] = {}

        async def remember(ids: dict[str, str]) -> None:
            uploaded.update(ids)  # known before the write, so a failed write still deletes the file
            await self.store.uploads.record(record.id, ids)

        try:
            async with client:
                try:
                    await up.aupload_paths(
                        client, checked.paths, self.settings.upload_concurrency, remember, on_upload
                    )
                    final = VectorStoreBatchRequest.model_validate(
                        up.with_file_ids(record.request, uploaded, checked.paths)
                    )
                    record.request = final.model_dump(mode="json", exclude_none=True)
                    ref = (await self._write([record]))[0]
                except BaseException:
                    await self._discard_uploads(client, builtins.list(uploaded.values()))
                    raise
                if not ref.created:  # an existing job for this idempotency key: the files are not needed
                    await self._discard_uploads(client, builtins.list(uploaded.values()))
        finally:
            await client.close()
        return ref

    async def _discard_uploads(self, client: Any, file_ids: builtins.list[str]) -> None:
        from worker.producer_uploads import adelete_files

        if not file_ids:
            return
        deleted = await adelete_files(client, file_ids)
        await self.store.uploads.forget_files(deleted)
        left = len(file_ids) - len(deleted)
        log.warning(
            "deleted the %d file(s) uploaded for a job that was not submitted%s",
            len(deleted),
            f"; {left} more are left to the files sweep" if left else "",
        )

    # --- read -----------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord:
        """The job's record; `JobNotFound` when there is none."""
        return await self.store.jobs.require(job_id)

    async def wait(
        self, job_id: str, timeout: float | None = None, *, raise_on_timeout: bool = False
    ) -> JobRecord:
        """`Jobs.wait`, awaited: no polling, and the loop runs on meanwhile."""
        return waited(await self.store.jobs.wait(job_id, timeout), timeout, raise_on_timeout)

    async def list(self, status: JobStatus | None = None, limit: int = 50) -> builtins.list[JobRecord]:
        """The newest jobs, of one status or all."""
        return await self.store.jobs.list(status, limit)

    async def events(
        self, last_id: str | None = None, *, follow: bool = False, count: int = 100
    ) -> AsyncIterator[JobEvent]:
        """Events after ``last_id`` (from the start when None, only new ones with ``"$"``), as an async
        iterator: it ends once caught up, or with ``follow`` waits for new events for ever."""
        last = last_id
        while True:
            batch = await self.store.jobs.events(last, FOLLOW_BLOCK_MS if follow else None, count)
            for event in batch:
                last = event.stream_id
                yield event
            if not batch and not follow:
                return

    # --- act ------------------------------------------------------------------------------
    async def cancel(self, job_id: str) -> JobRecord:
        """`Jobs.cancel`, awaited."""
        before = await self.get(job_id)
        after = await self.store.jobs.update(job_id, cancel_change)
        if needs_cancel_task(before, after):
            await self.dispatcher.send(c.TASK_CANCEL.format(kind=after.kind.value), [job_id])
        return after

    async def submit_tool_outputs(self, job_id: str, outputs: Sequence[OutputLike]) -> JobRecord:
        """`Jobs.submit_tool_outputs`, awaited."""
        given, answered = parse_outputs(job_id, outputs)
        record = await self.store.jobs.update(job_id, outputs_change(job_id, answered))
        await self.dispatcher.send(c.TASK_TOOL_OUTPUTS.format(kind=record.kind.value), [job_id, given])
        return record

    # --- dead letters ---------------------------------------------------------------------
    async def dead(self, limit: int = 100) -> builtins.list[JobRecord]:
        """Jobs that exhausted their retries, newest first."""
        return await self.store.jobs.dead(limit)

    async def retry_dead(self, job_id: str) -> JobRef:
        """`Jobs.retry_dead`, awaited."""
        record = await self.get(job_id)
        if not await self.store.jobs.undead(job_id):
            raise JobNotFound(job_id)
        return await self.submit(retry_request(record))
