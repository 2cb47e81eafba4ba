"""Run jobs end to end: real worker processes, the emulator over HTTP, the real openai client.

One suite for both backends: every scenario runs on each (the `backend` fixture).
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable
from typing import Any

import openai
import pytest
from helpers import WorkerProcess

from emulator.server import EmulatorHandle
from schemas.job import JobRecord, JobStatus
from worker.client import Jobs, ToolOutputsRejected

BACKENDS = ["assistants", "responses"]
FUNCTIONS = ["get_weather", "get_time"]

Ask = Callable[..., dict[str, Any]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api(emulator: EmulatorHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def ask(backend: str, api: openai.OpenAI) -> Ask:
    """Build a run request for the backend under test: ``ask("question", **fields)``."""
    if backend == "assistants":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assistant = api.beta.assistants.create(
                model="gpt-4o", tools=[{"type": "function", "function": {"name": n}} for n in FUNCTIONS]
            )

    def make(content: str, **fields: Any) -> dict[str, Any]:
        request = {"kind": "run", "backend": backend, "messages": [{"role": "user", "content": content}]}
        if backend == "assistants":
            request["assistant_id"] = assistant.id
        else:
            request["model"] = "gpt-4o"
            request["tools"] = [{"type": "function", "name": n} for n in FUNCTIONS]
        return {**request, **fields}

    return make


@pytest.fixture
def new_thread(backend: str, api: openai.OpenAI) -> Callable[[], dict[str, str]]:
    """A fresh thread (or conversation), as the request field that names it."""

    def make() -> dict[str, str]:
        if backend == "assistants":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return {"thread_id": api.beta.threads.create().id}
        return {"conversation_id": api.conversations.create().id}

    return make


def remote_status(api: openai.OpenAI, record: JobRecord) -> str:
    """The status the API reports for the job's remote run or response."""
    remote = record.remote
    if "run_id" in remote:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return str(api.beta.threads.runs.retrieve(remote["run_id"], thread_id=remote["thread_id"]).status)
    return str(api.responses.retrieve(remote["response_id"]).status)


def set_durations(emulator: EmulatorHandle, low: float, high: float | None = None) -> None:
    """Make the emulator's runs and responses last ``low`` seconds (or between ``low`` and ``high``)."""
    spread = {"kind": "fixed", "value": low} if high is None else {"kind": "uniform", "min": low, "max": high}
    emulator.update_profile(run_duration=spread, response_duration=spread)


def has_remote_run(record: JobRecord) -> bool:
    """True once the job's remote run (or response) exists and is recorded."""
    return bool(record.remote.get("run_id") or record.remote.get("response_id"))


def created_per_job(emulator: EmulatorHandle, backend: str) -> dict[str, int]:
    counters = emulator.counters()
    return dict(counters["runs_per_job" if backend == "assistants" else "responses_per_job"])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_status(jobs: Jobs, job_id: str, status: JobStatus, timeout: float = 20) -> JobRecord:
    wait_for(lambda: jobs.get(job_id).status == status, timeout, f"job {job_id} to be {status}")
    return jobs.get(job_id)


# --- completion -------------------------------------------------------------------------------
def test_a_plain_question_completes_with_text_and_usage(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    worker()
    ref = jobs.submit(ask("What is the capital of France?"))
    record = jobs.wait(ref.id, timeout=30)
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.result is not None and "capital of France" in record.result["text"]
    assert record.usage is not None and record.usage.total_tokens > 0
    assert created_per_job(emulator, backend) == {ref.id: 1}
    assert [e.type for e in jobs.events() if e.job_id == ref.id] == [
        "job.queued",
        "job.started",
        "job.completed",
    ]


def test_fifty_jobs_on_one_thread_run_in_submission_order(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    ask: Ask,
    new_thread: Callable[[], dict[str, str]],
    emulator: EmulatorHandle,
) -> None:
    set_durations(emulator, 0.05)
    emulator.update_profile(poll_after_ms=50)
    worker()
    worker()
    thread = new_thread()
    refs = [jobs.submit(ask(f"question {i}", **thread)) for i in range(50)]
    records = [jobs.wait(r.id, timeout=120) for r in refs]
    assert all(r.status == JobStatus.COMPLETED for r in records), {r.id: r.error for r in records if r.error}
    started = [r.started_at or 0 for r in records]
    assert started == sorted(started), "jobs on one thread started out of submission order"
    for earlier, later in itertools.pairwise(records):
        assert (earlier.finished_at or 0) <= (later.started_at or 0), (
            "two runs were active on the thread at once"
        )
    assert "400" not in emulator.counters()["statuses"], "the API refused a run for an active one"


def test_two_hundred_jobs_survive_a_storm_of_429s_503s_and_drops(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    ask: Ask,
    new_thread: Callable[[], dict[str, str]],
    emulator: EmulatorHandle,
    backend: str,
) -> None:
    worker()
    worker()
    threads = [new_thread() for _ in range(20)]
    emulator.set_faults(rate_429=0.2, retry_after_s=0.3, rate_503=0.1, rate_drop=0.03)
    refs = jobs.submit_many([ask(f"storm {i}", **threads[i % 20]) for i in range(200)])
    records = [jobs.wait(r.id, timeout=180) for r in refs]
    emulator.clear_faults()
    failed = {r.id: (r.status, r.error) for r in records if r.status != JobStatus.COMPLETED}
    assert not failed, failed
    counters = emulator.counters()
    assert counters["faults"].get("429", 0) > 50, counters["faults"]
    assert counters["early_retries"] == 0, counters["early_retries_per_route"]
    assert created_per_job(emulator, backend) == {r.id: 1 for r in refs}


def test_a_killed_worker_s_polls_are_finished_by_another(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    set_durations(emulator, 3, 6)
    doomed = worker("doomed")
    refs = jobs.submit_many([ask(f"long {i}") for i in range(20)])
    # Every run created and recorded: from here on the doomed worker holds only polls.
    wait_for(lambda: all(has_remote_run(jobs.get(r.id)) for r in refs), 30, "all runs to be created")
    doomed.kill()  # it held every poll: no other worker was running
    killed_at = time.monotonic()
    worker("survivor")
    records = [jobs.wait(r.id, timeout=60) for r in refs]
    assert time.monotonic() - killed_at < 60
    assert all(r.status == JobStatus.COMPLETED for r in records), [(r.status, r.error) for r in records]
    assert created_per_job(emulator, backend) == {r.id: 1 for r in refs}


def test_a_worker_killed_mid_start_is_recovered_without_a_second_run(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Every create is slow, so the kill lands while the start task is inside its API calls.
    emulator.set_faults(latency_ms=1500, paths=["POST"])
    doomed = worker("doomed", concurrency=1)
    ref = jobs.submit(ask("slow start"))
    wait_for(lambda: jobs.get(ref.id).status == JobStatus.RUNNING, 20, "the start task to begin")
    doomed.kill()
    killed_at = time.monotonic()
    worker("survivor")
    record = jobs.wait(ref.id, timeout=60)
    assert time.monotonic() - killed_at < 60
    assert record.status == JobStatus.COMPLETED, record.error
    assert created_per_job(emulator, backend) == {ref.id: 1}


# --- tool calls -------------------------------------------------------------------------------
def test_tool_outputs_from_the_producer_in_two_rounds(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask
) -> None:
    worker()
    ref = jobs.submit(ask("use get_time then get_weather", run_tools=False))
    first = wait_status(jobs, ref.id, JobStatus.REQUIRES_ACTION)
    assert [c.name for c in first.tool_calls] == ["get_time"]
    assert any(e.type == "job.requires_action" for e in jobs.events() if e.job_id == ref.id)
    jobs.submit_tool_outputs(ref.id, [{"tool_call_id": first.tool_calls[0].id, "output": "noon"}])
    second = wait_status(jobs, ref.id, JobStatus.REQUIRES_ACTION)
    assert [c.name for c in second.tool_calls] == ["get_weather"]
    jobs.submit_tool_outputs(ref.id, [{"tool_call_id": second.tool_calls[0].id, "output": "rain"}])
    record = jobs.wait(ref.id, timeout=30)
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.result is not None and "noon" in record.result["text"] and "rain" in record.result["text"]


def test_a_registered_worker_function_answers_without_a_producer(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask
) -> None:
    worker()
    record = jobs.wait(jobs.submit(ask("what does get_weather say?")).id, timeout=30)
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.result is not None and "sunny, 21 C" in record.result["text"]


def test_a_bad_set_of_outputs_is_refused_and_the_job_keeps_waiting(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask
) -> None:
    worker()
    ref = jobs.submit(ask("use get_time", run_tools=False))
    waiting = wait_status(jobs, ref.id, JobStatus.REQUIRES_ACTION)
    call_id = waiting.tool_calls[0].id
    with pytest.raises(ToolOutputsRejected, match="unknown tool_call_id call_nope"):
        jobs.submit_tool_outputs(ref.id, [{"tool_call_id": "call_nope", "output": "x"}])
    with pytest.raises(ToolOutputsRejected, match=f"no output for {call_id}"):
        jobs.submit_tool_outputs(
            ref.id,
            [{"tool_call_id": "call_other", "output": "x"}][:0]
            or [{"tool_call_id": "call_nope2", "output": "x"}],
        )
    assert jobs.get(ref.id).status == JobStatus.REQUIRES_ACTION
    jobs.submit_tool_outputs(ref.id, [{"tool_call_id": call_id, "output": "noon"}])
    assert jobs.wait(ref.id, timeout=30).status == JobStatus.COMPLETED


def test_a_run_left_waiting_past_its_expiry_ends_expired(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    if backend == "responses":
        pytest.skip("a completed response that asks for function calls does not expire")
    emulator.update_profile(run_expires_after_s=2)
    worker()
    ref = jobs.submit(ask("use get_time", run_tools=False))
    wait_status(jobs, ref.id, JobStatus.REQUIRES_ACTION)
    record = jobs.wait(ref.id, timeout=20)
    assert record.status == JobStatus.EXPIRED
    assert record.error is not None and record.error.code == "expired"


# --- cancel, deadline, errors -----------------------------------------------------------------
def test_cancel_of_a_queued_job_never_reaches_the_api(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    ask: Ask,
    new_thread: Callable[[], dict[str, str]],
    emulator: EmulatorHandle,
    backend: str,
) -> None:
    set_durations(emulator, 3)
    worker()
    thread = new_thread()
    first = jobs.submit(ask("first", **thread))
    second = jobs.submit(ask("second", **thread))
    wait_status(jobs, first.id, JobStatus.RUNNING)
    assert jobs.cancel(second.id).status == JobStatus.CANCELLED
    assert jobs.wait(first.id, timeout=30).status == JobStatus.COMPLETED
    assert jobs.get(second.id).status == JobStatus.CANCELLED
    assert second.id not in created_per_job(emulator, backend)


def test_cancel_of_a_running_job_cancels_its_remote_run(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    set_durations(emulator, 20)
    worker()
    ref = jobs.submit(ask("a long one"))
    wait_for(lambda: has_remote_run(jobs.get(ref.id)), 20, "the remote run")
    jobs.cancel(ref.id)
    record = jobs.wait(ref.id, timeout=20)
    assert record.status == JobStatus.CANCELLED
    assert remote_status(api, record) == "cancelled"


def test_a_deadline_ends_the_job_timed_out_and_cancels_the_run(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    set_durations(emulator, 30)
    worker()
    record = jobs.wait(jobs.submit(ask("too slow", deadline_s=2)).id, timeout=30)
    assert record.status == JobStatus.TIMED_OUT
    assert record.error is not None and record.error.code == "deadline_exceeded"
    assert remote_status(api, record) == "cancelled"


def test_a_missing_assistant_fails_at_once_naming_it(
    jobs: Jobs, worker: Callable[..., WorkerProcess], backend: str
) -> None:
    if backend != "assistants":
        pytest.skip("assistants only")
    worker()
    record = jobs.wait(
        jobs.submit(
            {"kind": "run", "assistant_id": "asst_missing", "messages": [{"role": "user", "content": "hi"}]}
        ).id,
        timeout=20,
    )
    assert record.status == JobStatus.FAILED
    assert record.error is not None and "asst_missing" in record.error.message
    assert not record.error.retryable


def test_reject_fails_a_job_on_a_busy_thread(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    ask: Ask,
    new_thread: Callable[[], dict[str, str]],
    emulator: EmulatorHandle,
) -> None:
    set_durations(emulator, 3)
    worker()
    thread = new_thread()
    first = jobs.submit(ask("first", **thread))
    wait_status(jobs, first.id, JobStatus.RUNNING)
    rejected = jobs.wait(jobs.submit(ask("second", strategy="reject", **thread)).id, timeout=20)
    assert rejected.status == JobStatus.FAILED and rejected.error is not None
    assert rejected.error.code == "thread_busy"
    assert jobs.wait(first.id, timeout=20).status == JobStatus.COMPLETED


def test_interrupt_cancels_the_active_run_then_starts(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    ask: Ask,
    new_thread: Callable[[], dict[str, str]],
    emulator: EmulatorHandle,
) -> None:
    set_durations(emulator, 20)
    worker()
    thread = new_thread()
    first = jobs.submit(ask("first", **thread))
    wait_status(jobs, first.id, JobStatus.RUNNING)
    set_durations(emulator, 0.5)
    second = jobs.wait(jobs.submit(ask("second", strategy="interrupt", **thread)).id, timeout=30)
    assert second.status == JobStatus.COMPLETED, second.error
    assert jobs.get(first.id).status == JobStatus.CANCELLED


def test_a_run_started_outside_the_system_is_waited_out(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    ask: Ask,
    api: openai.OpenAI,
    backend: str,
    emulator: EmulatorHandle,
) -> None:
    if backend != "assistants":
        pytest.skip("the API enforces one active run per thread only for Assistants")
    emulator.update_profile(run_duration={"kind": "fixed", "value": 2})
    request = ask("ours")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        thread = api.beta.threads.create()
        api.beta.threads.runs.create(thread.id, assistant_id=request["assistant_id"])
    worker()
    record = jobs.wait(jobs.submit({**request, "thread_id": thread.id}).id, timeout=30)
    assert record.status == JobStatus.COMPLETED, record.error


def test_both_backends_give_the_same_record_but_for_backend_and_remote_ids(
    jobs: Jobs, worker: Callable[..., WorkerProcess], api: openai.OpenAI
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assistant = api.beta.assistants.create(model="gpt-4o")
    worker()
    question = [{"role": "user", "content": "Which river runs through Paris?"}]
    on_assistants = jobs.submit({"kind": "run", "assistant_id": assistant.id, "messages": question})
    on_responses = jobs.submit(
        {"kind": "run", "backend": "responses", "model": "gpt-4o", "messages": question}
    )
    a, r = jobs.wait(on_assistants.id, timeout=30), jobs.wait(on_responses.id, timeout=30)
    assert a.status == r.status == JobStatus.COMPLETED
    varying = {
        "id",
        "request",
        "remote",
        "created_at",
        "started_at",
        "updated_at",
        "finished_at",
        "deadline_at",
    }
    assert a.model_dump(exclude=varying) == r.model_dump(exclude=varying)
    assert (a.request["backend"], r.request["backend"]) == ("assistants", "responses")


def test_the_same_idempotency_key_gives_one_job_and_dispatches_once(
    jobs: Jobs, ask: Ask, redis_client: Any
) -> None:
    first = jobs.submit(ask("once", idempotency_key="order-7"))
    again = jobs.submit(ask("once", idempotency_key="order-7"))
    assert (again.id, first.created, again.created) == (first.id, True, False)
    assert redis_client.llen("runs") == 1, "the second submit sent a start message"
    assert len(jobs.list()) == 1


def test_a_job_that_spends_its_retries_is_dead_lettered_and_can_be_retried(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle
) -> None:
    emulator.set_faults(rate_503=1.0, methods=["POST"])
    worker(extra_env={"AJ_MAX_RETRIES": "2", "AJ_POLL_FIRST": "0.1"})
    ref = jobs.submit(ask("doomed"))
    record = jobs.wait(ref.id, timeout=30)
    assert record.status == JobStatus.FAILED and record.error is not None and record.error.retryable
    assert [r.id for r in jobs.dead()] == [ref.id]
    emulator.clear_faults()
    retried = jobs.retry_dead(ref.id)
    assert jobs.wait(retried.id, timeout=30).status == JobStatus.COMPLETED
    assert jobs.dead() == []


def test_a_slow_api_never_strands_jobs_of_a_start_message(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle
) -> None:
    # Every create is slow and the soft time limit short: one start message's 20 jobs cannot all be
    # started within one task.
    emulator.set_faults(latency_ms=300, methods=["POST"])
    worker(extra_env={"AJ_TASK_SOFT_TIME_LIMIT": "2", "AJ_TASK_TIME_LIMIT": "3"})
    refs = jobs.submit_many([ask(f"slow {i}") for i in range(20)])
    deadline = time.monotonic() + 60
    records = [jobs.wait(r.id, timeout=max(deadline - time.monotonic(), 0.1)) for r in refs]
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 20, [r.error for r in records if r.error]
