"""Contract: a scripted session through every endpoint with the real openai client; every body validates
against the component schema openapi.json names for that path, method and status."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import openai
import pytest

from emulator.server import EmulatorHandle

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def _assistants_threads_runs(client: openai.OpenAI) -> None:
    beta = client.beta
    vs = client.vector_stores.create(name="docs")
    client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=("doc.txt", b"the doc"))
    assistant = beta.assistants.create(
        model="gpt-4o",
        name="helper",
        tools=[WEATHER, {"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [vs.id]}},
    )
    beta.assistants.retrieve(assistant.id)
    beta.assistants.update(assistant.id, metadata={"team": "a"})
    beta.assistants.list(limit=2)
    thread = beta.threads.create(messages=[{"role": "user", "content": "hello"}], metadata={"k": "v"})
    beta.threads.retrieve(thread.id)
    beta.threads.update(thread.id, metadata={"k": "w"})
    message = beta.threads.messages.create(thread.id, role="user", content="call get_weather please")
    beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    run = beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, metadata={"aj_job_id": "job-1"}
    )
    assert run.status == "requires_action"
    call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
    run = beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}]
    )
    assert run.status == "completed"
    beta.threads.runs.list(thread_id=thread.id)
    beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id)
    answer = beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert answer.content[0].type == "text"
    assert answer.content[0].text.annotations, "file_search on: the answer cites a file"
    other = beta.threads.runs.create(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_messages=[{"role": "user", "content": "more"}],
        instructions="be brief",
        model="gpt-4o-mini",
    )
    beta.threads.runs.cancel(run_id=other.id, thread_id=thread.id)
    beta.threads.runs.retrieve(run_id=other.id, thread_id=thread.id)
    beta.threads.delete(thread.id)
    beta.assistants.delete(assistant.id)


def _files_and_vector_stores(client: openai.OpenAI) -> None:
    upload = client.files.create(file=("a.txt", b"alpha"), purpose="assistants")
    client.files.retrieve(upload.id)
    assert client.files.content(upload.id).read() == b"alpha"
    client.files.list(purpose="assistants")
    vs = client.vector_stores.create(name="store", expires_after={"anchor": "last_active_at", "days": 7})
    client.vector_stores.retrieve(vs.id)
    client.vector_stores.update(vs.id, name="renamed", metadata={"a": "1"})
    client.vector_stores.list()
    client.vector_stores.files.create(
        vector_store_id=vs.id,
        file_id=upload.id,
        attributes={"lang": "en"},
        chunking_strategy={"type": "auto"},
    )
    client.vector_stores.files.list(vector_store_id=vs.id, filter="in_progress")
    client.vector_stores.files.retrieve(file_id=upload.id, vector_store_id=vs.id)
    client.vector_stores.files.delete(file_id=upload.id, vector_store_id=vs.id)
    others = [client.files.create(file=(f"b{i}.txt", b"beta"), purpose="assistants").id for i in range(3)]
    batch = client.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=others)
    client.vector_stores.file_batches.retrieve(batch_id=batch.id, vector_store_id=vs.id)
    client.vector_stores.file_batches.list_files(
        batch_id=batch.id, vector_store_id=vs.id, filter="in_progress"
    )
    client.vector_stores.file_batches.cancel(batch_id=batch.id, vector_store_id=vs.id)
    client.vector_stores.delete(vs.id)
    client.files.delete(upload.id)


def _responses_and_conversations(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    conversation = client.conversations.create(metadata={"topic": "weather"})
    client.conversations.retrieve(conversation.id)
    first = client.responses.create(
        model="gpt-4o",
        input="get_weather for Paris",
        tools=[tool],
        conversation=conversation.id,
        background=True,
    )
    while first.status in ("queued", "in_progress"):
        time.sleep(0.05)
        first = client.responses.retrieve(first.id)
    call = first.output[0]
    assert call.type == "function_call"
    final = client.responses.create(
        model="gpt-4o",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
        tools=[tool],
        conversation={"id": conversation.id},
    )
    assert "get_weather returned: rain" in final.output_text
    chained = client.responses.create(model="gpt-4o", input="and tomorrow?", previous_response_id=final.id)
    assert chained.status == "completed"
    client.conversations.items.list(conversation.id)
    slow = client.responses.create(model="gpt-4o", input="slow one", background=True)
    assert client.responses.cancel(slow.id).status == "cancelled"
    client.conversations.delete(conversation.id)


def _errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve("asst_missing")
    with pytest.raises(openai.BadRequestError):
        client.beta.assistants.create(model="gpt-4o", metadata={f"k{i}": "v" for i in range(17)})
    with pytest.raises(openai.BadRequestError):
        client.beta.assistants.list(limit=101)


def test_every_endpoint_answers_with_bodies_that_match_the_contract(
    recorded_client: openai.OpenAI, check_contract: Callable[[], list[tuple[str, str, int]]]
) -> None:
    # Given the real openai client, when it walks through every endpoint the system uses
    _assistants_threads_runs(recorded_client)
    _files_and_vector_stores(recorded_client)
    _responses_and_conversations(recorded_client)
    _errors(recorded_client)
    # Then every JSON body validates against the schema openapi.json names for it
    covered = check_contract()
    routes = {(method, template) for method, template, _ in covered}
    for expected in [
        ("GET", "/threads/{thread_id}/runs/{run_id}"),
        ("POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"),
        ("GET", "/threads/{thread_id}/runs/{run_id}/steps"),
        ("GET", "/vector_stores/{vector_store_id}/file_batches/{batch_id}/files"),
        ("POST", "/responses"),
        ("GET", "/conversations/{conversation_id}/items"),
        ("DELETE", "/files/{file_id}"),
    ]:
        assert expected in routes
    assert len(routes) >= 40


def test_a_wrong_or_missing_key_gets_401_in_the_api_error_shape(emulator: EmulatorHandle) -> None:
    # Given a client with the wrong key, when it calls the API, then 401 invalid_api_key
    client = openai.OpenAI(base_url=emulator.base_url, api_key="sk-wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.beta.assistants.list()
    error = caught.value.body
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_api_key"
    assert "Incorrect API key provided" in error["message"]
    # And with no key at all, also 401 in the same shape
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{emulator.base_url}/assistants", timeout=5)
    assert missing.value.code == 401
    assert set(json.loads(missing.value.read())["error"]) == {"message", "type", "param", "code"}
