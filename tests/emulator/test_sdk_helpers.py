"""The openai SDK's own polling helpers work against the emulator unchanged."""

from __future__ import annotations

import time

import openai

from emulator.server import EmulatorHandle

TOOLS = [
    {"type": "function", "function": {"name": "get_weather"}},
    {"type": "function", "function": {"name": "get_time"}},
]


def test_create_and_poll_completes_a_run_and_writes_the_answer(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What is 2+2?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert run.usage is not None and run.usage.total_tokens > 0
    answer = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert answer.content[0].text.value == "Answer to: What is 2+2?"  # type: ignore[union-attr]


def test_two_rounds_of_function_calls_then_an_answer_that_uses_the_outputs(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=TOOLS)  # type: ignore[arg-type]
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_messages=[{"role": "user", "content": "use get_weather then get_time"}],
    )
    called = []
    for output in ("sunny", "noon"):
        assert run.status == "requires_action"
        call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        called.append(call.function.name)
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": output}]
        )
    assert called == ["get_weather", "get_time"]
    assert run.status == "completed"
    text = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0].content[0].text.value  # type: ignore[union-attr]
    assert "get_weather returned: sunny" in text and "get_time returned: noon" in text


def test_file_batch_create_and_poll_and_upload_and_poll(
    client: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    emulator.update_profile(p_file_failed=0.5)
    vs = client.vector_stores.create(name="kb")
    ids = [client.files.create(file=(f"f{i}.txt", b"text"), purpose="assistants").id for i in range(8)]
    batch = client.vector_stores.file_batches.create_and_poll(vector_store_id=vs.id, file_ids=ids)
    assert batch.status == "completed"
    assert batch.file_counts.completed + batch.file_counts.failed == 8
    assert batch.file_counts.failed > 0
    failed = client.vector_stores.file_batches.list_files(
        batch_id=batch.id, vector_store_id=vs.id, filter="failed"
    )
    assert all(
        f.last_error and f.last_error.code in ("server_error", "unsupported_file", "invalid_file")
        for f in failed
    )
    one = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=("one.txt", b"x"))
    assert one.status in ("completed", "failed")
    assert emulator.counters()["uploads_per_filename"]["one.txt"] == 1


def test_background_response_polled_with_retrieve_completes(client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-4o", input="What is 2+2?", background=True)
    assert response.status in ("queued", "in_progress")
    while response.status in ("queued", "in_progress"):
        time.sleep(0.05)
        response = client.responses.retrieve(response.id)
    assert response.status == "completed"
    assert response.output_text == "Answer to: What is 2+2?"


def test_runs_and_responses_give_the_same_text_and_usage_for_the_same_question(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Summarise the report"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    text = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0].content[0].text.value  # type: ignore[union-attr]
    response = client.responses.create(model="gpt-4o", input="Summarise the report")
    assert response.output_text == text
    assert run.usage is not None and response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        run.usage.prompt_tokens,
        run.usage.completion_tokens,
    )
