"""What every poll decides the same way (tasks.poll_outcomes): the deadline rule, the server's poll hint,
and an HTTP or connection error turned into "poll again later" or "hand the job over"."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.poll_outcomes import DEADLINE_GRACE_S, failed, http_error, past_deadline, poll_after
from worker.backoff import PollPolicy
from worker.poller import Again, Handoff, PollContext
from worker.polls import BatchPoll, RunPoll
from worker.settings import Settings

CANCEL, FINISH = "aj.run.cancel", "aj.run.finish"
DEADLINE = 1_000.0
NO_JITTER = PollPolicy(first=1.0, factor=2.0, cap=8.0, jitter=0.0)
CTX = PollContext(
    http=None,  # type: ignore[arg-type]  # the outcomes never send a request
    base="",
    policy=NO_JITTER,
    settings=Settings(_env_file=None, max_retries=2),  # type: ignore[call-arg]
)
RUN = RunPoll(path="/responses/resp_1", deadline=DEADLINE)


def answer(
    status: int, entry: RunPoll | BatchPoll = RUN, body: bytes = b"", **headers: str
) -> Again | Handoff:
    """What a poll that got ``status`` (with ``body`` and ``headers``) leads to."""
    normalized = {k.replace("_", "-"): v for k, v in headers.items()}
    return http_error(CTX, "job_1", entry, status, body, normalized, finish=FINISH)


def error_handoff(code: str, message: str, retryable: bool) -> Handoff:
    return Handoff(
        FINISH,
        ["job_1", {"status": "error", "error": {"code": code, "message": message, "retryable": retryable}}],
    )


# --- the deadline rule ------------------------------------------------------------------------
def test_within_its_deadline_or_without_one_a_job_is_left_to_its_poll() -> None:
    assert past_deadline("job_1", RUN, cancel=CANCEL, finish=FINISH, now=DEADLINE - 1) is None
    assert past_deadline("job_1", RunPoll(path="/r"), cancel=CANCEL, finish=FINISH, now=10**12) is None


def test_past_its_deadline_a_job_has_its_remote_work_cancelled_once() -> None:
    assert past_deadline("job_1", RUN, cancel=CANCEL, finish=FINISH, now=DEADLINE + 1) == Handoff(
        CANCEL, ["job_1", "deadline"]
    )
    cancelling = RunPoll(path="/r", deadline=DEADLINE, cancelling=True)
    assert past_deadline("job_1", cancelling, cancel=CANCEL, finish=FINISH, now=DEADLINE + 1) is None


def test_a_cancel_that_does_not_take_within_the_grace_ends_the_job_deadline_exceeded() -> None:
    cancelling = BatchPoll(vector_store_id="vs_1", open=["b_1"], deadline=DEADLINE, cancelling=True)
    late = DEADLINE + DEADLINE_GRACE_S + 1
    assert past_deadline("job_1", cancelling, cancel=CANCEL, finish=FINISH, now=late) == Handoff(
        FINISH, ["job_1", {"status": "deadline_exceeded"}]
    )


# --- the server's hint ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"openai-poll-after-ms": "250"}, 0.25), ({}, None), ({"openai-poll-after-ms": "soon"}, None)],
)
def test_the_server_s_poll_hint_is_read_in_seconds(headers: dict[str, str], seconds: float | None) -> None:
    assert poll_after(headers) == seconds


# --- errors -----------------------------------------------------------------------------------
def test_a_rate_limit_that_names_its_wait_is_waited_out_without_counting_even_at_the_budget() -> None:
    at_budget = RunPoll(path="/r", errors=2)
    outcome = answer(429, at_budget, retry_after_ms="3000")
    assert isinstance(outcome, Again) and outcome.entry is None  # the entry, and its error count, stay
    assert 3.0 <= outcome.delay <= 3.1
    # A reset header counts as naming the wait: the later of the two
    outcome = answer(429, at_budget, x_ratelimit_reset_requests="2s", x_ratelimit_reset_tokens="6m0s")
    assert isinstance(outcome, Again) and outcome.entry is None and outcome.delay >= 360.0


def test_a_rate_limit_that_names_no_wait_counts_as_an_error() -> None:
    assert answer(429) == Again(1.0, RunPoll(path=RUN.path, deadline=DEADLINE, errors=1))


def test_a_retryable_error_is_polled_again_with_a_doubling_backoff_counting_each() -> None:
    assert answer(503) == Again(1.0, RunPoll(path=RUN.path, deadline=DEADLINE, errors=1))
    assert answer(500, RunPoll(path="/r", errors=1)) == Again(2.0, RunPoll(path="/r", errors=2))
    outcome = answer(503, retry_after="7")
    assert isinstance(outcome, Again) and outcome.delay >= 7.0  # a Retry-After is a floor


def test_once_retries_are_spent_the_job_is_handed_over_with_its_last_error_as_retryable() -> None:
    assert answer(503, RunPoll(path="/r", errors=2)) == error_handoff(
        "http_503", "HTTP 503 while polling", True
    )


def test_a_permanent_error_hands_the_job_over_at_once_with_the_api_s_own_words() -> None:
    body = b'{"error": {"code": "not_found", "message": "No response with id resp_1"}}'
    assert answer(404, body=body) == error_handoff("not_found", "No response with id resp_1", False)
    assert answer(400, body=b"<html>") == error_handoff("http_400", "HTTP 400 while polling", False)


def test_a_connection_error_is_retried_while_retries_last_and_batch_polls_count_the_same_way() -> None:
    error: dict[str, Any] = {"code": "connection_error", "message": "could not reach the API"}
    batch = BatchPoll(vector_store_id="vs_1", open=["b_1"], errors=1)
    assert failed(CTX, "job_1", batch, error, retryable=True, finish=FINISH) == Again(
        2.0, BatchPoll(vector_store_id="vs_1", open=["b_1"], errors=2)
    )
    spent = BatchPoll(vector_store_id="vs_1", open=["b_1"], errors=2)
    assert failed(CTX, "job_1", spent, error, retryable=True, finish=FINISH) == error_handoff(
        "connection_error", "could not reach the API", True
    )
    assert failed(CTX, "job_1", RUN, error, retryable=False, finish=FINISH) == error_handoff(
        "connection_error", "could not reach the API", False
    )
