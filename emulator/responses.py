"""Responses: create (background, conversation, previous_response_id, function tools), retrieve, cancel."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import validate
from emulator.bodies import json_response, read_json
from emulator.conversations import get_conversation, normalize_item, visible_items
from emulator.errors import bad_request, not_found
from emulator.response_model import ResponseRecord, new_response, render_response
from emulator.runs import JOB_ID_KEY, poll_headers
from emulator.state import Store


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = validate.required(body, "input")
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise bad_request("Invalid 'input': expected a string or an array of items.", param="input")
    return [normalize_item(item, f"input[{index}]") for index, item in enumerate(raw)]


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = validate.array(body, "tools") or []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise bad_request(
                f"Invalid 'tools[{index}]': expected an object with a type.", param=f"tools[{index}]"
            )
        if tool["type"] == "function" and not isinstance(tool.get("name"), str):
            raise bad_request(
                f"Missing required parameter: 'tools[{index}].name'.", param=f"tools[{index}].name"
            )
    # The API echoes function tools with their defaults filled in.
    return [
        {"description": None, "parameters": None, "strict": True, **t} if t["type"] == "function" else dict(t)
        for t in tools
    ]


def _conversation_id(body: dict[str, Any]) -> str | None:
    value = body.get("conversation")
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str):
        raise bad_request("Invalid 'conversation': expected an id or {'id': ...}.", param="conversation")
    return value


def _history(store: Store, body: dict[str, Any], conversation_id: str | None) -> list[dict[str, Any]]:
    previous_id = validate.string(body, "previous_response_id")
    if previous_id and conversation_id:
        raise bad_request(
            "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or "
            "'conversation'.",
            param="previous_response_id",
        )
    if conversation_id:
        return visible_items(store, get_conversation(store, conversation_id, "conversation"))
    if previous_id:
        previous = store.responses.get(previous_id)
        if previous is None:
            raise not_found("response", previous_id, "previous_response_id")
        shown = previous.status(store.now()) in ("completed", "incomplete")
        return previous.context + (previous.output if shown else [])
    return []


def _check_outputs(context: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
    calls = {item["call_id"] for item in context if item.get("type") == "function_call"}
    for item in items:
        if item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise bad_request(
                f"No tool call found for function call output with call_id {item['call_id']}.", param="input"
            )


def _settings(body: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    temperature, top_p = validate.number(body, "temperature"), validate.number(body, "top_p")
    return {
        "model": validate.string(body, "model", required_=True),
        "instructions": validate.string(body, "instructions"),
        "tools": tools,
        "tool_choice": body.get("tool_choice") or "auto",
        "metadata": validate.metadata(body) or {},
        "temperature": 1.0 if temperature is None else temperature,
        "top_p": 1.0 if top_p is None else top_p,
        "parallel_tool_calls": validate.boolean(body, "parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "max_output_tokens": validate.integer(body, "max_output_tokens", minimum=16),
        "text": validate.obj(body, "text") or {"format": {"type": "text"}},
        "truncation": validate.one_of(body, "truncation", {"auto", "disabled"}, "disabled"),
        "store": validate.boolean(body, "store", True),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
    }


async def create_response(request: Request) -> Response:
    """POST /v1/responses."""
    store: Store = request.app.state.store
    body = await read_json(request, allow_empty=False)
    if validate.boolean(body, "stream"):
        raise bad_request("The emulator does not stream; omit 'stream'.", param="stream")
    settings = _settings(body, _tools(body))
    background = bool(validate.boolean(body, "background", False))
    conversation_id = _conversation_id(body)
    items = _input_items(body)
    history = _history(store, body, conversation_id)
    _check_outputs(history + items, items)
    record = new_response(store, settings, history + items, background)
    record.input_ids = [item["id"] for item in items]
    if conversation_id:
        record.conversation_id = conversation_id
        conversation = store.conversations[conversation_id]
        conversation.items.extend((item, None) for item in items)
        conversation.items.extend((item, record.id) for item in record.output)
    store.responses[record.id] = record
    if background:
        request.app.state.webhooks.response_created(record)
    request.app.state.counters.count_job("responses", settings["metadata"].get(JOB_ID_KEY))
    return json_response(render_response(record, store.now()))


def get_response(store: Store, response_id: str) -> ResponseRecord:
    """The response, or the API's 404."""
    record = store.responses.get(response_id)
    if record is None:
        raise not_found("response", response_id)
    return record


async def retrieve_response(request: Request) -> Response:
    """GET /v1/responses/{response_id}."""
    store: Store = request.app.state.store
    record = get_response(store, request.path_params["response_id"])
    return json_response(render_response(record, store.now()), headers=poll_headers(store))


async def cancel_response(request: Request) -> Response:
    """POST /v1/responses/{response_id}/cancel: background responses only; an ended one stays as it is."""
    store: Store = request.app.state.store
    record = get_response(store, request.path_params["response_id"])
    if not record.background:
        raise bad_request("Only responses created with background=true can be cancelled.")
    now = store.now()
    if record.status(now) in ("queued", "in_progress"):
        record.cancelled_at = now
        request.app.state.webhooks.response_cancelled(record)
    return json_response(render_response(record, now))


async def delete_response(request: Request) -> Response:
    """DELETE /v1/responses/{response_id}."""
    store: Store = request.app.state.store
    record = get_response(store, request.path_params["response_id"])
    del store.responses[record.id]
    request.app.state.webhooks.response_deleted(record.id)
    return json_response({"id": record.id, "object": "response.deleted", "deleted": True})


ROUTES = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
]
