"""The producer client: submit jobs, read and wait for them, cancel them, answer their tool calls.

with Jobs() as jobs:
    ref = jobs.submit({"kind": "run", "model": "gpt-4o", "messages": [...]})
    record = jobs.wait(ref.id, timeout=60)
    print(record.run_result().text)

Reading needs only Redis: the Celery app a producer publishes with is built on the first submit, cancel or
tool outputs, so a process that only reads never imports Celery. `worker.aclient.AsyncJobs` is the same
client for asyncio.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from schemas.job import JobEvent, JobRecord, JobStatus
from worker import constants as c
from worker.connections import make_store
from worker.dispatch import Dispatcher
from worker.problems import check_redis_url
from worker.producer import (
    JobRef,
    JobTimeout,
    Send,
    ToolOutputsRejected,
    cancel_change,
    check_outputs,
    needs_cancel_task,
    new_record,
    outputs_change,
    parse_outputs,
    plan,
    prepare,
    retry_request,
    start_task,
    waited,
)
from worker.settings import Settings, get_settings, mask_url_passwords
from worker.store import JobNotFound, Store

if TYPE_CHECKING:
    from celery import Celery

    from worker.producer import OutputLike, RequestLike
    from worker.producer_uploads import UploadProgress

__all__ = ["JobRef", "JobTimeout", "Jobs", "ToolOutputsRejected", "check_outputs", "start_task"]

log = logging.getLogger(__name__)

PRODUCER_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
"""How hard a producer tries to publish before leaving the message to the outbox."""


class Jobs:
    """Submit and follow jobs. Thread-safe; one per process is plenty. A context manager (`close`).

    ``check_paths`` (default True): an indexing job's paths are on this machine, as the workers see them;
    each is made absolute and checked before submit. False when the files are only where the workers run:
    paths must then be absolute and are not looked at here.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        celery: Celery | None = None,
        *,
        check_paths: bool = True,
    ):
        self.settings = settings or get_settings()
        check_redis_url(self.settings.redis_url)
        self._own_store = store is None
        self.store = store or make_store(self.settings)
        self._celery = celery
        self._own_celery = celery is None
        self.check_paths = check_paths
        self.dispatcher = Dispatcher(self.store.schedule, self._publish, self.settings.outbox_grace)

    @property
    def celery(self) -> Celery:
        """The app messages are published with (built on first use: see `worker.celery_config`)."""
        if self._celery is None:
            from worker.celery_config import producer_app

            self._celery = producer_app(self.settings)
        return self._celery

    def close(self) -> None:
        """Close the connections this client opened (not those of a store or app it was handed)."""
        if self._own_celery and self._celery is not None:
            self._celery.close()
        if self._own_store:
            self.store.redis.close()

    def __enter__(self) -> Jobs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _publish(self, name: str, args: list[Any], task_id: str) -> None:
        # A short retry: when the broker is down the outbox sends the message later, so a producer never
        # blocks for long on it.
        self.celery.send_task(name, args=args, task_id=task_id, retry_policy=PRODUCER_PUBLISH_RETRY)

    # --- submit ---------------------------------------------------------------------------
    def submit(
        self, request: RequestLike, *, upload: bool = False, on_upload: UploadProgress | None = None
    ) -> JobRef:
        """Validate ``request``, write the job `queued`, dispatch its start and return its id at once.

        Bad input raises `pydantic.ValidationError` naming each bad field, a bad path
        `worker.paths.BadPaths` naming each; nothing is written then. ``upload`` (indexing jobs): upload
        the paths from here and submit their file ids (`worker.producer_uploads`; needs the API key),
        calling ``on_upload`` after each file.
        """
        if upload:
            return self._submit_uploading(request, on_upload)
        return self.submit_many([request])[0]

    def submit_many(self, requests: Iterable[RequestLike]) -> builtins.list[JobRef]:
        """`submit` for many requests: all validated first, then written in one round trip, each with its
        start staged in the outbox, then dispatched in a few start messages (up to `SUBMIT_CHUNK` jobs
        each). When the broker cannot be reached the jobs are still accepted: a worker's poll loop sends
        their starts once the grace period passes."""
        checked = [prepare(r, self.settings, check_paths=self.check_paths) for r in requests]
        return self._write([new_record(r, self.settings) for r in checked])

    def _write(self, records: Sequence[JobRecord]) -> builtins.list[JobRef]:
        planned = plan(records)
        submitted = self.store.jobs.submit(planned.jobs, self.settings.outbox_grace)
        for send in planned.sends(submitted):
            self._send_start(send, submitted.token)
        return [JobRef(job_id, created) for job_id, created in submitted.results]

    def _send_start(self, send: Send, token: int) -> None:
        try:
            self.dispatcher.sent(send.task, send.args, send.task_id, send.job_ids, token)
        except Exception as exc:  # the broker is down: the outbox sends them later
            log.warning(
                "the broker (AJ_BROKER_URL, or AJ_REDIS_URL when unset) could not be reached (%s); the "
                "%d job(s) are accepted and a worker sends their start once the broker answers, "
                "%g s (AJ_OUTBOX_GRACE) after the submit at the earliest",
                mask_url_passwords(str(exc)),
                len(send.job_ids),
                self.settings.outbox_grace,
            )

    def _submit_uploading(self, request: RequestLike, on_upload: UploadProgress | None) -> JobRef:
        from schemas.requests import VectorStoreBatchRequest
        from worker import producer_uploads as up

        checked = prepare(request, self.settings, check_paths=True)
        if not isinstance(checked, VectorStoreBatchRequest) or not checked.paths:
            return self._write([new_record(checked, self.settings)])[0]
        record = new_record(checked, self.settings)
        client = up.openai_client(self.settings)
        uploaded: dict[str, str] = {}
        try:
            uploaded = up.upload_paths(
                client,
                checked.paths,
                self.settings.upload_concurrency,
                lambda ids: self._record_upload(record.id, ids, uploaded),
                on_upload,
            )
            final = VectorStoreBatchRequest.model_validate(
                up.with_file_ids(record.request, uploaded, checked.paths)
            )
            record.request = final.model_dump(mode="json", exclude_none=True)
            ref = self._write([record])[0]
        except BaseException:
            self._discard_uploads(client, list(uploaded.values()))
            raise
        finally:
            client.close()
        if not ref.created:  # the idempotency key named a job already: these files are not needed
            self._discard_uploads(up.openai_client(self.settings), list(uploaded.values()))
        return ref

    def _record_upload(self, job_id: str, ids: dict[str, str], uploaded: dict[str, str]) -> None:
        uploaded.update(ids)  # known before the write, so a failed write still deletes the file
        self.store.uploads.record(job_id, ids)

    def _discard_uploads(self, client: Any, file_ids: builtins.list[str]) -> None:
        from worker.producer_uploads import delete_files

        if not file_ids:
            return
        deleted = delete_files(client, file_ids)
        for file_id in deleted:
            self.store.inventory.forget_file(file_id)
        left = len(file_ids) - len(deleted)
        log.warning(
            "deleted the %d file(s) uploaded for a job that was not submitted%s",
            len(deleted),
            f"; {left} more are left to the files sweep" if left else "",
        )

    # --- read -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        """The job's record; `JobNotFound` when there is none."""
        return self.store.jobs.require(job_id)

    def wait(self, job_id: str, timeout: float | None = None, *, raise_on_timeout: bool = False) -> JobRecord:
        """Block until the job ends or ``timeout`` seconds pass; the record either way, or with
        ``raise_on_timeout`` `JobTimeout` when the job has not ended by then."""
        return waited(self.store.jobs.wait(job_id, timeout), timeout, raise_on_timeout)

    def list(self, status: JobStatus | None = None, limit: int = 50) -> builtins.list[JobRecord]:
        """The newest jobs, of one status or all."""
        return self.store.jobs.list(status, limit)

    def events(
        self, last_id: str | None = None, block_ms: int | None = None, count: int = 100
    ) -> builtins.list[JobEvent]:
        """Events after ``last_id`` (all when None), blocking up to ``block_ms`` for new ones."""
        return self.store.jobs.events(last_id, block_ms, count)

    # --- act ------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job. A queued job ends `cancelled` at once and never reaches OpenAI; a running
        one has its remote work cancelled and ends `cancelled` once the remote side says so."""
        before = self.get(job_id)
        after = self.store.jobs.update(job_id, cancel_change)
        if needs_cancel_task(before, after):
            self.dispatcher.send(c.TASK_CANCEL.format(kind=after.kind.value), [job_id])
        return after

    def submit_tool_outputs(self, job_id: str, outputs: Sequence[OutputLike]) -> JobRecord:
        """Answer the calls a job waits on. The set is checked first: every pending call id
        answered exactly once and no unknown id, else `ToolOutputsRejected` and the job keeps waiting."""
        given, answered = parse_outputs(job_id, outputs)
        record = self.store.jobs.update(job_id, outputs_change(job_id, answered))
        # Sent through the outbox: if the broker is down now, a worker sends the outputs later.
        self.dispatcher.send(c.TASK_TOOL_OUTPUTS.format(kind=record.kind.value), [job_id, given])
        return record

    # --- dead letters ---------------------------------------------------------------------
    def dead(self, limit: int = 100) -> builtins.list[JobRecord]:
        """Jobs that exhausted their retries, newest first."""
        return self.store.jobs.dead(limit)

    def retry_dead(self, job_id: str) -> JobRef:
        """Submit a dead-lettered job's request again as a new job and take it off the dead-letter set.

        The dead job itself stays as it ended: an ended job never changes again.
        """
        record = self.get(job_id)
        if not self.store.jobs.undead(job_id):
            raise JobNotFound(job_id)
        return self.submit(retry_request(record))
