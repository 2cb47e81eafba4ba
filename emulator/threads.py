"""Threads: create (with messages), retrieve, update, delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import validate
from emulator.bodies import json_response, read_json
from emulator.errors import bad_request
from emulator.messages import get_thread, message_from_request
from emulator.state import Store, Thread, new_id


def render_thread(thread: Thread) -> dict[str, Any]:
    """The thread as the API's ThreadObject."""
    return {
        "id": thread.id,
        "object": "thread",
        "created_at": int(thread.created),
        "tool_resources": thread.tool_resources,
        "metadata": thread.metadata,
    }


async def create_thread(request: Request) -> Response:
    """POST /v1/threads, with optional initial messages."""
    store: Store = request.app.state.store
    body = await read_json(request)
    messages = validate.array(body, "messages") or []
    thread = Thread(
        id=new_id("thread_"),
        created=store.now(),
        metadata=validate.metadata(body) or {},
        tool_resources=validate.obj(body, "tool_resources") or {},
    )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"Invalid 'messages[{index}]': expected an object.", param=f"messages[{index}]")
        message_from_request(store, thread, message, f"messages[{index}].")
    store.threads[thread.id] = thread
    return json_response(render_thread(thread))


async def retrieve_thread(request: Request) -> Response:
    """GET /v1/threads/{thread_id}."""
    return json_response(render_thread(get_thread(request.app.state.store, request.path_params["thread_id"])))


async def update_thread(request: Request) -> Response:
    """POST /v1/threads/{thread_id} (metadata, tool_resources)."""
    thread = get_thread(request.app.state.store, request.path_params["thread_id"])
    body = await read_json(request)
    if "metadata" in body:
        thread.metadata = validate.metadata(body) or {}
    if "tool_resources" in body:
        thread.tool_resources = validate.obj(body, "tool_resources") or {}
    return json_response(render_thread(thread))


async def delete_thread(request: Request) -> Response:
    """DELETE /v1/threads/{thread_id}."""
    store: Store = request.app.state.store
    thread = get_thread(store, request.path_params["thread_id"])
    del store.threads[thread.id]
    for message in thread.messages:
        store.messages.pop(message["id"], None)
    return json_response({"id": thread.id, "object": "thread.deleted", "deleted": True})


ROUTES = [
    Route("/v1/threads", create_thread, methods=["POST"]),
    Route("/v1/threads/{thread_id}", retrieve_thread, methods=["GET"]),
    Route("/v1/threads/{thread_id}", update_thread, methods=["POST"]),
    Route("/v1/threads/{thread_id}", delete_thread, methods=["DELETE"]),
]
