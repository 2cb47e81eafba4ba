"""Runs: create, retrieve, list, update, cancel, submit_tool_outputs, and run steps."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import answers, run_model, validate
from emulator.assistants import get_assistant
from emulator.bodies import json_response, raw_json, read_json
from emulator.errors import bad_request, not_found
from emulator.messages import get_thread, message_from_request, message_text, refuse_if_active, settle_thread
from emulator.pagination import paginate
from emulator.run_model import Run
from emulator.run_steps import render_steps
from emulator.state import Store, Thread, new_id

JOB_ID_KEY = "aj_job_id"
"""The metadata key that carries our job id (counted per job by the admin counters)."""


def _settings(body: dict[str, Any], assistant: dict[str, Any]) -> dict[str, Any]:
    instructions = validate.string(body, "instructions") or assistant.get("instructions") or ""
    extra = validate.string(body, "additional_instructions")
    if extra:
        instructions = f"{instructions}\n{extra}" if instructions else extra
    tools = validate.assistant_tools(body)
    validate.integer(body, "max_prompt_tokens", minimum=256)
    validate.integer(body, "max_completion_tokens", minimum=16)
    validate.boolean(body, "parallel_tool_calls")
    temperature = validate.number(body, "temperature")
    top_p = validate.number(body, "top_p")
    return {
        "model": validate.string(body, "model") or assistant["model"],
        "instructions": instructions,
        "tools": tools if tools is not None else assistant["tools"],
        "metadata": validate.metadata(body) or {},
        "temperature": temperature if temperature is not None else assistant.get("temperature", 1.0),
        "top_p": top_p if top_p is not None else assistant.get("top_p", 1.0),
        "max_prompt_tokens": body.get("max_prompt_tokens"),
        "max_completion_tokens": body.get("max_completion_tokens"),
        "truncation_strategy": validate.obj(body, "truncation_strategy")
        or {"type": "auto", "last_messages": None},
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "response_format": body.get("response_format") or assistant.get("response_format") or "auto",
    }


def _vector_store_ids(*resources: dict[str, Any] | None) -> list[str]:
    ids: list[str] = []
    for resource in resources:
        ids.extend(((resource or {}).get("file_search") or {}).get("vector_store_ids") or [])
    return ids


def _question(thread: Thread) -> str:
    for message in reversed(thread.messages):
        if message["role"] == "user":
            return message_text(message)
    return ""


async def create_run(request: Request) -> Response:
    """POST /v1/threads/{thread_id}/runs, with additional_messages, overrides and metadata."""
    store: Store = request.app.state.store
    thread = get_thread(store, request.path_params["thread_id"])
    body = await read_json(request, allow_empty=False)
    if validate.boolean(body, "stream"):
        raise bad_request("The emulator does not stream; omit 'stream'.", param="stream")
    assistant = get_assistant(store, validate.string(body, "assistant_id", required_=True), "assistant_id")
    settings = _settings(body, assistant)
    additional = validate.array(body, "additional_messages") or []
    refuse_if_active(store, thread)
    for index, message in enumerate(additional):
        if not isinstance(message, dict):
            raise bad_request("Invalid additional message.", param=f"additional_messages[{index}]")
        message_from_request(store, thread, message, f"additional_messages[{index}].")
    tools = settings["tools"]
    function_names = [t["function"]["name"] for t in tools if t.get("type") == "function"]
    question = _question(thread)
    now = store.now()
    run = Run(
        id=new_id("run_"),
        thread_id=thread.id,
        assistant_id=assistant["id"],
        created=now,
        expires=now + store.profile.run_expires_after_s,
        segments=[],
        functions=answers.called_functions(question, function_names),
        outcome="completed",
        question=question,
        settings=settings,
    )
    if any(t.get("type") == "file_search" for t in tools):
        run.vector_store_ids = _vector_store_ids(assistant.get("tool_resources"), thread.tool_resources)
    run_model.draw_run(store, run)
    store.runs[run.id] = run
    thread.runs.append(run)
    thread.active_run = run
    request.app.state.counters.count_job("runs", settings["metadata"].get(JOB_ID_KEY))
    return raw_json(run_model.body(store, run))


def get_run(store: Store, thread_id: str, run_id: str) -> Run:
    """The run on that thread, or the API's 404."""
    run = store.runs.get(run_id)
    if run is None or run.thread_id != thread_id or thread_id not in store.threads:
        raise not_found("run", run_id)
    return run


def poll_headers(store: Store) -> dict[str, str]:
    """The `openai-poll-after-ms` hint the API sends on pollable objects."""
    return {"openai-poll-after-ms": str(store.profile.poll_after_ms)}


async def retrieve_run(request: Request) -> Response:
    """GET /v1/threads/{thread_id}/runs/{run_id} (also served by the gateway's fast path)."""
    store: Store = request.app.state.store
    run = get_run(store, request.path_params["thread_id"], request.path_params["run_id"])
    return raw_json(run_model.body(store, run), poll_headers(store))


async def list_runs(request: Request) -> Response:
    """GET /v1/threads/{thread_id}/runs."""
    store: Store = request.app.state.store
    thread = get_thread(store, request.path_params["thread_id"])
    settle_thread(store, thread)
    now = store.now()

    def render(run: Run) -> dict[str, Any]:
        run_model.settle(store, run, now)
        return run_model.render(run)

    return json_response(paginate(thread.runs, request.query_params, render, lambda r: r.id))


async def update_run(request: Request) -> Response:
    """POST /v1/threads/{thread_id}/runs/{run_id} (metadata)."""
    store: Store = request.app.state.store
    run = get_run(store, request.path_params["thread_id"], request.path_params["run_id"])
    body = await read_json(request)
    if "metadata" in body:
        run.settings["metadata"] = validate.metadata(body) or {}
        run.body = None
    return raw_json(run_model.body(store, run))


async def cancel_run(request: Request) -> Response:
    """POST /v1/threads/{thread_id}/runs/{run_id}/cancel; an ended run answers 400 like the API."""
    store: Store = request.app.state.store
    run = get_run(store, request.path_params["thread_id"], request.path_params["run_id"])
    now = store.now()
    run_model.settle(store, run, now)
    if run.status not in ("queued", "in_progress", "requires_action"):
        raise bad_request(f"Cannot cancel run with status '{run.status}'.")
    run_model.request_cancel(store, run, now)
    return raw_json(run_model.body(store, run))


def _tool_outputs(body: dict[str, Any], run: Run) -> dict[str, str]:
    outputs = validate.array(body, "tool_outputs", required_=True) or []
    pending = {call.id for call in run.calls if call.output is None}
    given: dict[str, str] = {}
    for index, item in enumerate(outputs):
        param = f"tool_outputs[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"Invalid '{param}': expected an object.", param=param)
        call_id = validate.string(item, "tool_call_id", required_=True)
        if call_id not in pending:
            raise bad_request(
                f"Invalid tool_call_id: {call_id}. No tool call found with that id.", param=param
            )
        if call_id in given:
            raise bad_request(f"Duplicate tool_call_id: {call_id}.", param=param)
        output = item.get("output", "")
        if not isinstance(output, str):
            raise bad_request(
                f"Invalid type for '{param}.output': expected a string.", param=f"{param}.output"
            )
        given[call_id] = output
    missing = pending - given.keys()
    if missing:
        raise bad_request(
            f"Expected tool outputs for call_ids {sorted(pending)}, got {sorted(given)}.",
            param="tool_outputs",
        )
    return given


async def submit_tool_outputs(request: Request) -> Response:
    """POST .../runs/{run_id}/submit_tool_outputs: every pending call answered exactly once."""
    store: Store = request.app.state.store
    run = get_run(store, request.path_params["thread_id"], request.path_params["run_id"])
    body = await read_json(request, allow_empty=False)
    if validate.boolean(body, "stream"):
        raise bad_request("The emulator does not stream; omit 'stream'.", param="stream")
    now = store.now()
    run_model.settle(store, run, now)
    if run.status != "requires_action":
        raise bad_request(f'Runs in status "{run.status}" do not accept tool outputs.', param="tool_outputs")
    run_model.submit_outputs(store, run, _tool_outputs(body, run), now)
    return raw_json(run_model.body(store, run))


async def list_steps(request: Request) -> Response:
    """GET .../runs/{run_id}/steps."""
    store: Store = request.app.state.store
    run = get_run(store, request.path_params["thread_id"], request.path_params["run_id"])
    run_model.settle(store, run, store.now())
    steps = render_steps(run)
    return json_response(paginate(steps, request.query_params, lambda s: s, lambda s: s["id"]))


async def retrieve_step(request: Request) -> Response:
    """GET .../runs/{run_id}/steps/{step_id}."""
    store: Store = request.app.state.store
    run = get_run(store, request.path_params["thread_id"], request.path_params["run_id"])
    run_model.settle(store, run, store.now())
    for step in render_steps(run):
        if step["id"] == request.path_params["step_id"]:
            return json_response(step)
    raise not_found("run step", request.path_params["step_id"])


_RUN = "/v1/threads/{thread_id}/runs/{run_id}"
ROUTES = [
    Route("/v1/threads/{thread_id}/runs", create_run, methods=["POST"]),
    Route("/v1/threads/{thread_id}/runs", list_runs, methods=["GET"]),
    Route(_RUN, retrieve_run, methods=["GET"]),
    Route(_RUN, update_run, methods=["POST"]),
    Route(_RUN + "/cancel", cancel_run, methods=["POST"]),
    Route(_RUN + "/submit_tool_outputs", submit_tool_outputs, methods=["POST"]),
    Route(_RUN + "/steps", list_steps, methods=["GET"]),
    Route(_RUN + "/steps/{step_id}", retrieve_step, methods=["GET"]),
]
