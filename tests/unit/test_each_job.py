"""A message that carries many jobs (tasks.base.each_job): one job's error is that job's alone, while a
Redis blip or the task's soft time limit retries the whole message, whose steps pick up where they
stopped."""

from __future__ import annotations

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from pydantic_core import SchemaError

from schemas.job import JobError
from tasks.base import RETRIED, each_job
from tasks.steps import Services

JOBS = ["job_1", "job_2", "job_3"]


class Steps:
    """Runs each job's step, raising ``exc`` for ``job_2``; records the jobs it ended failed."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        self.ran: list[str] = []
        self.failed: dict[str, JobError] = {}

    def step(self, job_id: str) -> None:
        self.ran.append(job_id)
        if job_id == "job_2":
            raise self.exc

    def fail(self, svc: Services, job_id: str, error: JobError) -> None:
        self.failed[job_id] = error


def test_one_job_s_error_fails_that_job_only_and_the_others_still_run() -> None:
    steps = Steps(ValueError("bad tool output"))
    each_job(None, JOBS, steps.step, steps.fail)  # type: ignore[arg-type]  # the services only pass through
    assert steps.ran == JOBS
    assert list(steps.failed) == ["job_2"]
    assert (
        steps.failed["job_2"].code == "internal_error"
        and "ValueError: bad tool output" in steps.failed["job_2"].message
    )


@pytest.mark.parametrize("exc", [SoftTimeLimitExceeded(), redis.ConnectionError("reset")])
def test_a_soft_time_limit_or_a_redis_blip_retries_the_whole_message_and_fails_no_job(
    exc: BaseException,
) -> None:
    steps = Steps(exc)
    with pytest.raises(RETRIED):
        each_job(None, JOBS, steps.step, steps.fail)  # type: ignore[arg-type]
    assert steps.ran == ["job_1", "job_2"] and steps.failed == {}


def test_a_soft_time_limit_that_library_code_wrapped_fails_no_job() -> None:
    # Given a step cut off by the soft time limit inside an import, which wraps it (the limit is the cause)
    try:
        try:
            raise SoftTimeLimitExceeded()
        except SoftTimeLimitExceeded as limit:
            raise RuntimeError("import of openai.resources failed") from limit
    except RuntimeError as wrapped:
        steps = Steps(wrapped)
    # When the message runs, then it stops there and no job is failed: the message is tried again
    with pytest.raises(RuntimeError):
        each_job(None, JOBS, steps.step, steps.fail)  # type: ignore[arg-type]
    assert steps.ran == ["job_1", "job_2"] and steps.failed == {}


def test_a_soft_time_limit_named_only_in_a_schema_error_fails_no_job() -> None:
    wrapped = SchemaError(
        'Error building "definitions" validator:\n  SchemaError: Error building "literal" validator:\n'
        "  SoftTimeLimitExceeded: SoftTimeLimitExceeded()"
    )
    steps = Steps(wrapped)
    with pytest.raises(SchemaError):
        each_job(None, JOBS, steps.step, steps.fail)  # type: ignore[arg-type]
    assert steps.failed == {}
