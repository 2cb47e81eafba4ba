"""Run and file behaviour from the profile: outcomes, expiry, the active-run rule, determinism, validation."""

from __future__ import annotations

import time

import openai
import pytest

from emulator.profile import Distribution, Profile
from emulator.server import EmulatorHandle, running_emulator


def _run(
    client: openai.OpenAI, text: str = "hi", **assistant: object
) -> tuple[str, openai.types.beta.threads.Run]:
    created = client.beta.assistants.create(model="gpt-4o", **assistant)  # type: ignore[arg-type]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    return thread.id, client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=created.id)


@pytest.mark.parametrize(
    ("share", "status"),
    [("p_run_failed", "failed"), ("p_run_incomplete", "incomplete"), ("p_run_expired", "expired")],
)
def test_profile_shares_end_runs_other_ways(
    client: openai.OpenAI, emulator: EmulatorHandle, share: str, status: str
) -> None:
    emulator.update_profile(**{share: 1.0})
    _, run = _run(client)
    assert run.status == status
    if status == "failed":
        assert run.last_error is not None and run.last_error.code == "server_error"
    if status == "incomplete":
        assert run.incomplete_details is not None


def test_a_run_left_in_requires_action_expires(client: openai.OpenAI, emulator: EmulatorHandle) -> None:
    emulator.update_profile(run_expires_after_s=0.6)
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    thread_id, run = _run(client, "please lookup", tools=tools)
    assert run.status == "requires_action"
    time.sleep(0.7)
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread_id).status == "expired"


def test_an_active_run_refuses_new_messages_and_runs_and_tool_outputs_are_checked(
    client: openai.OpenAI,
) -> None:
    assistant = client.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "function", "function": {"name": "f"}}]
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "call f"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    for attempt in (
        lambda: client.beta.threads.messages.create(thread.id, role="user", content="more"),
        lambda: client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id),
    ):
        with pytest.raises(openai.BadRequestError, match=f"already has an active run {run.id}"):
            attempt()
    run = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_unknown", "output": "x"}]
        )
    cancelled = client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
    assert cancelled.status == "cancelling"
    assert client.beta.threads.runs.poll(run.id, thread_id=thread.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)


def test_the_same_seed_gives_the_same_durations_and_outcomes() -> None:
    profile = Profile(seed=42, run_duration=Distribution(kind="lognormal", median=0.2, sigma=0.5, max=0.5))
    timelines = []
    for _ in range(2):
        with running_emulator(profile.model_copy(update={"p_run_failed": 0.5})) as handle:
            client = openai.OpenAI(base_url=handle.base_url, api_key=handle.api_key)
            assistant = client.beta.assistants.create(model="gpt-4o")
            runs = []
            for _ in range(4):
                thread = client.beta.threads.create()
                runs.append(
                    client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id).id
                )
            details = [handle.run_detail(r) for r in runs]
            timelines.append(
                [(d["outcome"], round(d["expires_at_precise"] - d["created_at_precise"], 6)) for d in details]
            )
    assert timelines[0] == timelines[1]


def test_pagination_and_validation_follow_the_api(client: openai.OpenAI, emulator: EmulatorHandle) -> None:
    ids = [client.beta.assistants.create(model="gpt-4o", name=str(i)).id for i in range(5)]
    page = client.beta.assistants.list(limit=2, order="asc", after=ids[0])
    assert [a.id for a in page.data] == ids[1:3] and page.has_more
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.assistants.create(model="gpt-4o", metadata={"k" * 65: "v"})
    assert caught.value.param is not None and caught.value.param.startswith("metadata")
    with pytest.raises(openai.BadRequestError, match="2000"):
        vs = client.vector_stores.create(name="x")
        client.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=["file-x"] * 2001)
    thread = client.beta.threads.create()
    emulator.age(thread.id, 3600)
    assert client.beta.threads.retrieve(thread.id).created_at <= int(time.time()) - 3590
