"""Assistants: create, retrieve, update, delete, list."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import validate
from emulator.bodies import json_response, read_json
from emulator.errors import not_found
from emulator.pagination import paginate
from emulator.state import Store, new_id

_UPDATABLE = ("model", "name", "description", "instructions", "temperature", "top_p")


def _check(body: dict[str, Any]) -> None:
    for name in ("model", "name", "description", "instructions"):
        validate.string(body, name)
    for name in ("temperature", "top_p"):
        validate.number(body, name)
    validate.assistant_tools(body)
    validate.metadata(body)
    validate.obj(body, "tool_resources")


def get_assistant(store: Store, assistant_id: str, param: str | None = None) -> dict[str, Any]:
    """The assistant, or the API's 404."""
    assistant = store.assistants.get(assistant_id)
    if assistant is None:
        raise not_found("assistant", assistant_id, param)
    return assistant


async def create_assistant(request: Request) -> Response:
    """POST /v1/assistants."""
    store: Store = request.app.state.store
    body = await read_json(request, allow_empty=False)
    validate.string(body, "model", required_=True)
    _check(body)
    assistant = {
        "id": new_id("asst_"),
        "object": "assistant",
        "created_at": int(store.now()),
        "name": body.get("name"),
        "description": body.get("description"),
        "model": body["model"],
        "instructions": body.get("instructions"),
        "tools": body.get("tools") or [],
        "tool_resources": body.get("tool_resources") or {},
        "metadata": body.get("metadata") or {},
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "response_format": body.get("response_format") or "auto",
    }
    store.assistants[assistant["id"]] = assistant
    return json_response(assistant)


async def retrieve_assistant(request: Request) -> Response:
    """GET /v1/assistants/{assistant_id}."""
    return json_response(get_assistant(request.app.state.store, request.path_params["assistant_id"]))


async def update_assistant(request: Request) -> Response:
    """POST /v1/assistants/{assistant_id}."""
    assistant = get_assistant(request.app.state.store, request.path_params["assistant_id"])
    body = await read_json(request)
    _check(body)
    for name in _UPDATABLE:
        if name in body:
            assistant[name] = body[name]
    for name in ("tools", "tool_resources", "metadata", "response_format"):
        if name in body:
            assistant[name] = body[name] or (
                [] if name == "tools" else {} if name != "response_format" else "auto"
            )
    return json_response(assistant)


async def delete_assistant(request: Request) -> Response:
    """DELETE /v1/assistants/{assistant_id}."""
    store: Store = request.app.state.store
    assistant = get_assistant(store, request.path_params["assistant_id"])
    del store.assistants[assistant["id"]]
    return json_response({"id": assistant["id"], "object": "assistant.deleted", "deleted": True})


async def list_assistants(request: Request) -> Response:
    """GET /v1/assistants."""
    store: Store = request.app.state.store
    items = list(store.assistants.values())
    return json_response(paginate(items, request.query_params, lambda a: a, lambda a: a["id"]))


ROUTES = [
    Route("/v1/assistants", create_assistant, methods=["POST"]),
    Route("/v1/assistants", list_assistants, methods=["GET"]),
    Route("/v1/assistants/{assistant_id}", retrieve_assistant, methods=["GET"]),
    Route("/v1/assistants/{assistant_id}", update_assistant, methods=["POST"]),
    Route("/v1/assistants/{assistant_id}", delete_assistant, methods=["DELETE"]),
]
