"""The pure parts a producer and an operator meet: typed results, how records and tables read, one-line
errors with their exit codes, list settings, and the worker's API-key check."""

from __future__ import annotations

import errno
import time

import pytest
import redis
from pydantic import SecretStr, ValidationError

from schemas.job import JobError, JobKind, JobRecord, JobStatus, Usage, WrongKind
from schemas.requests import parse_request
from schemas.results import CleanupResult, IndexResult, RunResult
from worker.display import ago, duration, job_table, record_rows, validation_lines
from worker.flower import describe_args, describe_ends
from worker.preflight import check_api_key
from worker.problems import ExitCode, explain, redis_url_problem
from worker.settings import ConfigurationError, Settings, get_settings

NOW = 1_800_000_000.0


def record(kind: JobKind, **fields: object) -> JobRecord:
    base: dict[str, object] = {"id": "job_18ecd5eca0d81ed2e301f5267e", "kind": kind, "request": {}}
    return JobRecord.model_validate({"created_at": NOW - 90, "updated_at": NOW - 5, **base, **fields})


# --- typed results ------------------------------------------------------------------------------
def test_a_run_s_typed_result_has_its_text_annotations_files_usage_and_tool_rounds() -> None:
    run = record(
        JobKind.RUN,
        status="completed",
        result={
            "text": "Paris.",
            "annotations": [{"type": "file_citation", "file_id": "file-1", "index": 5}],
            "file_ids": ["file-9"],
        },
        usage={"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        remote={"response_id": "resp_1", "rounds": 3},
    )
    result = run.typed_result()
    assert isinstance(result, RunResult)
    assert (result.text, result.file_ids, result.tool_rounds) == ("Paris.", ["file-9"], 2)
    assert result.annotations[0].file_id == "file-1"
    assert result.usage == Usage(prompt_tokens=10, completion_tokens=3, total_tokens=13)
    assert result.summary() == "'Paris.', 10 in / 3 out tokens, 2 tool rounds"
    # ...and the record's JSON is untouched
    assert run.result == {
        "text": "Paris.",
        "annotations": [{"type": "file_citation", "file_id": "file-1", "index": 5}],
        "file_ids": ["file-9"],
    }


def test_an_index_result_names_the_store_counts_and_each_failed_file_with_its_error() -> None:
    job = record(
        JobKind.INDEX,
        status="failed",
        result={
            "vector_store_id": "vs_1",
            "file_counts": {"completed": 8, "failed": 2, "in_progress": 0, "cancelled": 0, "total": 10},
            "failed": [
                {
                    "file_id": "file-2",
                    "path": "/d/b.md",
                    "last_error": {"code": "server_error", "message": "boom"},
                }
            ],
            "recovered": [],
            "uploaded": 10,
            "skipped_paths": [{"path": "/d/x.exe", "problem": "unsupported"}],
            "batches": [{"id": "vsfb_1", "round": 0, "status": "completed", "file_counts": None}],
            "partial": True,
        },
    )
    result = job.index_result()
    assert isinstance(result, IndexResult)
    assert result.failed[0].path == "/d/b.md" and result.failed[0].last_error is not None
    assert result.failed[0].last_error.code == "server_error"
    assert result.summary() == "vs_1: 8 completed, 1 failed, 1 paths skipped"
    with pytest.raises(WrongKind, match="is a index job, not a run job"):
        job.run_result()


def test_a_cleanup_result_counts_per_target() -> None:
    job = record(
        JobKind.CLEANUP,
        status="completed",
        result={
            "dry_run": True,
            "deleted": 0,
            "skipped": 1,
            "failed": 0,
            "targets": {
                "threads": {"candidates": 3, "skipped": {"active job": 1}, "would_delete": ["t1"]},
                "files": {"error": {"code": "server_error", "message": "listing failed"}},
            },
        },
    )
    result = job.cleanup_result()
    assert isinstance(result, CleanupResult)
    assert result.targets["threads"].candidates == 3 and result.targets["threads"].skipped == {
        "active job": 1
    }
    assert result.targets["files"].error is not None
    assert result.summary() == "would delete 3, skipped 1, failed 0 (threads, files)"
    assert record(JobKind.CLEANUP).typed_result() is None


# --- how records read ---------------------------------------------------------------------------
def test_human_times_and_durations() -> None:
    assert [duration(s) for s in (0.25, 12.34, 245, 7380, 97200)] == [
        "250 ms",
        "12.3 s",
        "4 min 05 s",
        "2 h 03 min",
        "1 d 3 h",
    ]
    assert [ago(NOW - s, NOW) for s in (0.2, 42, 300, 7200, 200_000)] == [
        "just now",
        "42 s ago",
        "5 min ago",
        "2 h ago",
        "2 d ago",
    ]
    assert ago(NOW + 300, NOW) == "in 5 min"


def test_status_shows_what_a_user_asks_for() -> None:
    job = record(
        JobKind.RUN,
        status="failed",
        request={"backend": "responses"},
        attempts=2,
        retries=1,
        started_at=NOW - 80,
        finished_at=NOW - 5,
        error={"code": "not_found", "message": "No assistant found with id 'asst_x'."},
        remote={"conversation_id": "conv_1", "response_id": "resp_1", "checked": True},
    )
    rows = dict(record_rows(job, NOW))
    assert rows["status"] == "failed" and rows["kind"] == "run" and rows["backend"] == "responses"
    assert rows["attempts"] == "2 (1 retries)"
    assert rows["error"] == "not_found: No assistant found with id 'asst_x'."
    assert rows["response_id"] == "resp_1" and rows["conversation_id"] == "conv_1" and "checked" not in rows
    assert rows["queued for"] == "10.0 s" and rows["ran for"] == "1 min 15 s"
    assert rows["took"] == "1 min 25 s, ended 5 s ago"


def test_a_list_in_80_columns_keeps_every_id_whole_and_shortens_only_the_last_column() -> None:
    long_error = JobError(code="x" * 60, message="m")
    jobs = [
        record(JobKind.INDEX, id=f"job_18ecd5eca0d81ed2e301f526{i:02d}", status="failed", error=long_error)
        for i in range(3)
    ]
    table = job_table(jobs, 80, NOW)
    lines = table.splitlines()
    assert all(len(line) <= 80 for line in lines), table
    for job in jobs:
        assert job.id in table
    assert lines[1].endswith("…")
    # ...and piped (no width) nothing is cut
    assert "x" * 60 in job_table(jobs, None, NOW)


def test_a_validation_error_names_each_field_once() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_request(
            {
                "kind": "run",
                "backend": "assistants",
                "assistant_id": "",
                "messages": [],
                "metadata": {f"k{i}": "v" for i in range(17)},
            }
        )
    lines = validation_lines(caught.value.errors())
    assert "assistant_id: must not be empty" in lines
    assert any(line.startswith("metadata: at most 16") for line in lines), lines
    assert not any(line.split(": ")[0] == line.split(": ")[1] for line in lines if line.count(": ") > 1), (
        lines
    )


# --- Flower ---------------------------------------------------------------------------------------
def test_flower_shows_a_task_as_its_jobs_and_kind_and_its_result_as_their_ends() -> None:
    ids = [f"job_{i}" for i in range(20)]
    assert describe_args("aj.run.start", [ids]) == "20 run jobs: job_0, job_1, job_2 +17 more"
    assert (
        describe_args("aj.run.finish", ["job_9", {"status": "completed", "output": ["..."]}]) == "job_9 (run)"
    )
    outputs = [{"tool_call_id": "c1", "output": "secret text"}]
    assert describe_args("aj.run.tool_outputs", ["job_9", outputs]) == "job_9 (run), 1 tool outputs"
    assert describe_args("aj.index.cancel", ["job_7", "deadline"]) == "job_7 (index), deadline"
    assert describe_args("aj.cleanup.scheduled", [["threads", "files"]]) == "sweep of threads, files"
    assert describe_ends([("job_x", "failed", "not_found")]) == "job_x -> failed (not_found)"
    many = [(f"job_{i}", "running", None) for i in range(5)]
    assert describe_ends(many) == "job_0 -> running; job_1 -> running; job_2 -> running; +2 more"


# --- errors a person can act on -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://:p@ss/word@host:6379/0", "an @ after the host part"),
        ("redis://:a#b@host:6379/0", "an @ after the host part"),
        ("redis://user:pa?ss@host:6379", "an @ after the host part"),
        ("redis://:a:b:c@host:port/0", "the port is not a number"),
        ("redis://:p%40ss@host:6379/0", None),
        ("unix:///run/redis.sock", None),
    ],
)
def test_a_redis_url_that_cannot_mean_what_was_meant_says_to_percent_encode(
    url: str, says: str | None
) -> None:
    problem = redis_url_problem(url)
    if says is None:
        assert problem is None
    else:
        assert problem is not None and says in problem and "percent-encode" in problem


def test_each_redis_failure_has_its_own_line_and_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(redis_url="redis://:pw@cache.example:6380/0")
    unreachable = redis.ConnectionError("Error connecting")
    unreachable.__context__ = OSError(errno.ENETUNREACH, "Network is unreachable")
    cases = {
        redis.ConnectionError("Error 111 connecting to cache.example:6380. Connection refused."): "refused",
        unreachable: "unreachable",
        redis.TimeoutError("Timeout connecting to server"): "does not answer",
        redis.AuthenticationError("invalid username-password pair"): "refused the credentials",
        redis.ResponseError("WRONGPASS invalid username-password pair"): "refused the credentials",
    }
    for exc, says in cases.items():
        problem = explain(exc, settings)
        assert problem is not None and problem.code == ExitCode.UNREACHABLE, exc
        assert says in problem.message and "AJ_REDIS_URL" in problem.message
        assert "redis://:****@cache.example:6380/0" in problem.message and ":pw@" not in problem.message
    assert explain(RuntimeError("a bug"), settings) is None


# --- settings and the worker's start --------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "modules"),
    [("a.b,c.d", ["a.b", "c.d"]), (" a.b , c.d ", ["a.b", "c.d"]), ('["a.b"]', ["a.b"]), ("", [])],
)
def test_a_list_setting_takes_comma_separated_names_or_json(
    value: str, modules: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AJ_TOOL_MODULES", value)
    assert Settings(_env_file=None).tool_modules == modules  # type: ignore[call-arg]


def test_a_mangled_list_setting_is_named_and_its_value_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AJ_TOOL_MODULES", "[sk-SECRET")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    get_settings.cache_clear()
    assert "AJ_TOOL_MODULES: must be a JSON list" in str(caught.value) and "SECRET" not in str(caught.value)


def test_a_worker_without_an_api_key_refuses_to_start_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY is not set"):
        check_api_key(Settings(_env_file=None, openai_api_key=None))  # type: ignore[call-arg]
    check_api_key(Settings(_env_file=None, openai_api_key=SecretStr("sk-1")))  # type: ignore[call-arg]


def test_wait_timeout_record_is_what_it_was() -> None:
    from worker.producer import JobTimeout, waited

    live = record(JobKind.RUN, status=JobStatus.RUNNING)
    assert waited(live, 1.0, raise_on_timeout=False) is live
    with pytest.raises(JobTimeout, match="is still running after 1 s") as caught:
        waited(live, 1.0, raise_on_timeout=True)
    assert caught.value.record is live
    assert time.time() > 0
