"""Thread messages: building message objects, and the messages routes (create, list, retrieve, update)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import validate
from emulator.bodies import json_response, read_json
from emulator.errors import bad_request, not_found
from emulator.pagination import paginate
from emulator.state import Store, Thread, new_id


def text_part(value: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A message content part of type text."""
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}


def parse_content(content: Any, param: str = "content") -> list[dict[str, Any]]:
    """Message content from a request (a string or a list of parts) as the API's content list."""
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, list) or not content:
        raise bad_request(f"Invalid '{param}': expected a string or a non-empty array of parts.", param=param)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(text_part(part["text"]))
        elif kind in ("image_file", "image_url") and isinstance(part.get(kind), dict):
            parts.append({"type": kind, kind: {"detail": "auto", **part[kind]}})
        else:
            raise bad_request(f"Invalid content part at '{param}[{index}]'.", param=f"{param}[{index}]")
    return parts


def message_text(message: dict[str, Any]) -> str:
    """The concatenated text of a message's text parts."""
    return "\n".join(p["text"]["value"] for p in message["content"] if p["type"] == "text")


def new_message(
    thread_id: str,
    role: str,
    content: list[dict[str, Any]],
    created: float,
    *,
    assistant_id: str | None = None,
    run_id: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    metadata: dict[str, str] | None = None,
    status: str = "completed",
) -> dict[str, Any]:
    """A message object in the API's shape."""
    return {
        "id": new_id("msg_"),
        "object": "thread.message",
        "created_at": int(created),
        "thread_id": thread_id,
        "status": status,
        "incomplete_details": {"reason": "max_tokens"} if status == "incomplete" else None,
        "completed_at": int(created) if status == "completed" else None,
        "incomplete_at": int(created) if status == "incomplete" else None,
        "role": role,
        "content": content,
        "assistant_id": assistant_id,
        "run_id": run_id,
        "attachments": attachments or [],
        "metadata": metadata or {},
    }


def message_from_request(
    store: Store, thread: Thread, body: dict[str, Any], param: str = ""
) -> dict[str, Any]:
    """Validate a message request (role, content, attachments, metadata) and append it to the thread."""
    role = validate.one_of(body, "role", {"user", "assistant"})
    if role is None:
        validate.required(body, "role")
    content = parse_content(validate.required(body, "content"), f"{param}content")
    attachments = validate.array(body, "attachments")
    message = new_message(
        thread.id,
        str(role),
        content,
        store.now(),
        attachments=attachments,
        metadata=validate.metadata(body),
    )
    thread.messages.append(message)
    store.messages[message["id"]] = message
    return message


def get_thread(store: Store, thread_id: str) -> Thread:
    """The thread, or the API's 404."""
    thread = store.threads.get(thread_id)
    if thread is None:
        raise not_found("thread", thread_id)
    return thread


def settle_thread(store: Store, thread: Thread) -> None:
    """Bring the thread's active run up to date so messages it wrote are visible."""
    from emulator.run_model import settle

    if thread.active_run is not None:
        settle(store, thread.active_run, store.now())


def refuse_if_active(store: Store, thread: Thread) -> None:
    """The API's rule: a thread with an active run takes no new messages or runs."""
    settle_thread(store, thread)
    run = thread.active_run
    if run is not None:
        raise bad_request(f"Thread {thread.id} already has an active run {run.id}.")


async def create_message(request: Request) -> Response:
    """POST /v1/threads/{thread_id}/messages."""
    store: Store = request.app.state.store
    thread = get_thread(store, request.path_params["thread_id"])
    body = await read_json(request)
    refuse_if_active(store, thread)
    return json_response(message_from_request(store, thread, body))


async def list_messages(request: Request) -> Response:
    """GET /v1/threads/{thread_id}/messages, with the `run_id` filter."""
    store: Store = request.app.state.store
    thread = get_thread(store, request.path_params["thread_id"])
    settle_thread(store, thread)
    items = thread.messages
    run_id = request.query_params.get("run_id")
    if run_id:
        items = [m for m in items if m["run_id"] == run_id]
    return json_response(paginate(items, request.query_params, lambda m: m, lambda m: m["id"]))


def _get_message(store: Store, request: Request) -> dict[str, Any]:
    thread = get_thread(store, request.path_params["thread_id"])
    settle_thread(store, thread)
    message = store.messages.get(request.path_params["message_id"])
    if message is None or message["thread_id"] != thread.id:
        raise not_found("message", request.path_params["message_id"])
    return message


async def retrieve_message(request: Request) -> Response:
    """GET /v1/threads/{thread_id}/messages/{message_id}."""
    return json_response(_get_message(request.app.state.store, request))


async def update_message(request: Request) -> Response:
    """POST /v1/threads/{thread_id}/messages/{message_id} (metadata only)."""
    message = _get_message(request.app.state.store, request)
    body = await read_json(request)
    if "metadata" in body:
        message["metadata"] = validate.metadata(body) or {}
    return json_response(message)


async def delete_message(request: Request) -> Response:
    """DELETE /v1/threads/{thread_id}/messages/{message_id}."""
    store: Store = request.app.state.store
    message = _get_message(store, request)
    store.threads[message["thread_id"]].messages.remove(message)
    del store.messages[message["id"]]
    return json_response({"id": message["id"], "object": "thread.message.deleted", "deleted": True})


ROUTES = [
    Route("/v1/threads/{thread_id}/messages", create_message, methods=["POST"]),
    Route("/v1/threads/{thread_id}/messages", list_messages, methods=["GET"]),
    Route("/v1/threads/{thread_id}/messages/{message_id}", retrieve_message, methods=["GET"]),
    Route("/v1/threads/{thread_id}/messages/{message_id}", update_message, methods=["POST"]),
    Route("/v1/threads/{thread_id}/messages/{message_id}", delete_message, methods=["DELETE"]),
]
