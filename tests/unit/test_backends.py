"""How each run backend reads a retrieved run or response (``snapshot``) and what a finished one produced
(``result``): the same normalized shape for both, whatever the API's own."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from openai.types.beta.threads import Message

from schemas.job import JobKind, JobRecord, JobStatus, ToolCall, Usage
from tasks.assistants import AssistantsBackend
from tasks.backends import Snapshot
from tasks.responses import ResponsesBackend

ASSISTANTS, RESPONSES = AssistantsBackend(), ResponsesBackend()
MESSAGE_IDS = itertools.count(1)


def record(status: JobStatus = JobStatus.RUNNING, **remote: Any) -> JobRecord:
    return JobRecord(
        id="job_1", kind=JobKind.RUN, status=status, request={}, remote=remote, created_at=0.0, updated_at=0.0
    )


# --- assistants: a run ------------------------------------------------------------------------
def test_a_run_that_asks_for_outputs_lists_its_calls_and_when_it_expires() -> None:
    run = {
        "status": "requires_action",
        "required_action": {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"c": 1}'},
                    },
                ]
            },
        },
        "usage": None,
        "expires_at": 1_700_000_600,
    }
    assert ASSISTANTS.snapshot(run) == Snapshot(
        status="requires_action",
        tool_calls=[
            ToolCall(id="call_1", name="get_time", arguments="{}"),
            ToolCall(id="call_2", name="get_weather", arguments='{"c": 1}'),
        ],
        expires_at=1_700_000_600,
    )


def test_a_finished_run_carries_its_usage_error_and_incomplete_details() -> None:
    run = {
        "status": "failed",
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        "last_error": {"code": "server_error", "message": "Sorry"},
        "incomplete_details": None,
        "completed_at": None,
    }
    snap = ASSISTANTS.snapshot(run)
    assert (snap.status, snap.tool_calls) == ("failed", [])
    assert snap.usage == Usage(prompt_tokens=20, completion_tokens=10, total_tokens=30)
    assert snap.error == {"code": "server_error", "message": "Sorry"}


def message(
    role: str, content: list[dict[str, Any]], attachments: list[dict[str, Any]] | None = None
) -> Message:
    """A thread message as the SDK returns it."""
    return Message.model_validate(
        {
            "id": f"msg_{next(MESSAGE_IDS)}",
            "assistant_id": "asst_1",
            "attachments": attachments or [],
            "completed_at": 1,
            "content": content,
            "created_at": 1,
            "incomplete_at": None,
            "incomplete_details": None,
            "metadata": {},
            "object": "thread.message",
            "role": role,
            "run_id": "run_1",
            "status": "completed",
            "thread_id": "thread_1",
        }
    )


def test_a_run_s_result_is_the_text_annotations_and_files_of_the_assistant_messages_it_wrote() -> None:
    citation = {
        "type": "file_citation",
        "text": "【4:0†notes.txt】",
        "start_index": 5,
        "end_index": 17,
        "file_citation": {"file_id": "file_cited"},
    }
    messages = [
        message("user", [{"type": "text", "text": {"value": "question", "annotations": []}}]),
        message("assistant", [{"type": "text", "text": {"value": "First", "annotations": [citation]}}]),
        message(
            "assistant",
            [
                {"type": "text", "text": {"value": "Second", "annotations": []}},
                {"type": "image_file", "image_file": {"file_id": "file_image"}},
            ],
            attachments=[{"file_id": "file_attached", "tools": []}],
        ),
    ]
    ids = [m.id for m in messages]
    pages = [messages[:2], messages[2:]]  # the run wrote more than one page: every page is read
    asked: list[tuple[str, dict[str, str]]] = []

    class Api:
        async def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
            asked.append((path, params))
            page = pages[len(asked) - 1]
            data = [m.model_dump(mode="json") for m in page]
            return {"object": "list", "data": data, "has_more": page is pages[0]}

    result = asyncio.run(
        ASSISTANTS.result(
            Api(),  # type: ignore[arg-type]
            record(thread_id="thread_1", run_id="run_1"),
            Snapshot(status="completed"),
        )
    )
    assert result == {
        "text": "First\n\nSecond",
        "annotations": [{"type": "file_citation", "file_id": "file_cited", "index": 17}],
        "file_ids": ["file_image", "file_attached"],
    }
    first = {"run_id": "run_1", "order": "asc", "limit": "100"}
    assert asked == [
        ("/threads/thread_1/messages", first),
        ("/threads/thread_1/messages", {**first, "after": ids[1]}),
    ]


# --- responses: a background response ----------------------------------------------------------
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"}


def text_item(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": list(parts)}


def test_a_completed_response_that_calls_functions_requires_action() -> None:
    body = {"status": "completed", "output": [{"type": "reasoning"}, CALL], "usage": None}
    snap = RESPONSES.snapshot(body)
    assert snap.status == "requires_action"
    assert snap.tool_calls == [ToolCall(id="call_1", name="get_time", arguments="{}")]


@pytest.mark.parametrize("status", ["in_progress", "failed", "cancelled"])
def test_function_calls_change_nothing_but_a_completed_response(status: str) -> None:
    assert RESPONSES.snapshot({"status": status, "output": [CALL]}).status == status


def test_a_response_s_usage_is_read_from_input_and_output_tokens() -> None:
    body = {"status": "completed", "output": [], "usage": {"input_tokens": 12, "output_tokens": 5}}
    assert RESPONSES.snapshot(body).usage == Usage(prompt_tokens=12, completion_tokens=5, total_tokens=17)


def test_a_response_s_result_is_its_message_text_with_annotations_and_container_files() -> None:
    output = [
        {"type": "reasoning", "summary": []},
        text_item(
            {
                "type": "output_text",
                "text": "Paris",
                "annotations": [
                    {"type": "file_citation", "file_id": "file_cited", "index": 5},
                    {"type": "container_file_citation", "file_id": "cfile_1", "index": 5},
                ],
            },
            {"type": "refusal", "refusal": "no"},
        ),
        text_item({"type": "output_text", "text": "is the capital", "annotations": []}),
    ]
    snap = RESPONSES.snapshot({"status": "completed", "output": output})
    result = asyncio.run(RESPONSES.result(None, record(), snap))  # type: ignore[arg-type]  # no request
    assert result == {
        "text": "Paris\n\nis the capital",
        "annotations": [
            {"type": "file_citation", "file_id": "file_cited", "index": 5},
            {"type": "container_file_citation", "file_id": "cfile_1", "index": 5},
        ],
        "file_ids": ["cfile_1"],
    }


def test_a_response_waiting_for_outputs_has_nothing_left_to_cancel_while_a_run_does() -> None:
    waiting = record(JobStatus.REQUIRES_ACTION)
    assert not RESPONSES.cancellable(waiting) and RESPONSES.cancellable(record())
    assert ASSISTANTS.cancellable(waiting)
