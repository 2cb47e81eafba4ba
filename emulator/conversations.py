"""Conversations: create, retrieve, update, delete, and their items (list, create, retrieve)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import validate
from emulator.bodies import json_response, read_json
from emulator.errors import bad_request, not_found
from emulator.pagination import paginate
from emulator.state import Conversation, Store, new_id

SHOWN = ("completed", "incomplete")


def normalize_item(item: Any, param: str) -> dict[str, Any]:
    """An input item (message, function_call or function_call_output) as a stored item with an id."""
    if not isinstance(item, dict):
        raise bad_request(f"Invalid '{param}': expected an object.", param=param)
    kind = item.get("type", "message")
    if kind == "message":
        role = validate.one_of(item, "role", {"user", "assistant", "system", "developer"})
        content = validate.required(item, "content")
        if isinstance(content, str):
            content = [{"type": "input_text" if role != "assistant" else "output_text", "text": content}]
        if not isinstance(content, list):
            raise bad_request(f"Invalid '{param}.content'.", param=f"{param}.content")
        parts = [
            {"annotations": [], "logprobs": [], **part} if part.get("type") == "output_text" else dict(part)
            for part in content
            if isinstance(part, dict)
        ]
        return {
            "type": "message",
            "id": new_id("msg_"),
            "status": "completed",
            "role": role,
            "content": parts,
        }
    if kind == "function_call_output":
        call_id = validate.string(item, "call_id", required_=True)
        output = item.get("output", "")
        if not isinstance(output, str):
            raise bad_request(f"Invalid '{param}.output': expected a string.", param=f"{param}.output")
        return {
            "type": kind,
            "id": new_id("fco_"),
            "call_id": call_id,
            "output": output,
            "status": "completed",
        }
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            validate.string(item, name, required_=True)
        return {"id": new_id("fc_"), "status": "completed", **item}
    raise bad_request(f"Invalid '{param}.type': unsupported item type '{kind}'.", param=f"{param}.type")


def get_conversation(store: Store, conversation_id: str, param: str | None = None) -> Conversation:
    """The conversation, or the API's 404."""
    conversation = store.conversations.get(conversation_id)
    if conversation is None:
        raise not_found("conversation", conversation_id, param)
    return conversation


def visible_items(store: Store, conversation: Conversation) -> list[dict[str, Any]]:
    """Items a reader sees now: inputs, and outputs of responses that have completed."""
    now = store.now()
    shown = []
    for item, response_id in conversation.items:
        if response_id is not None:
            record = store.responses.get(response_id)
            if record is None or record.status(now) not in SHOWN:
                continue
        shown.append(item)
    return shown


def render(conversation: Conversation) -> dict[str, Any]:
    """The API's ConversationResource."""
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": int(conversation.created),
        "metadata": conversation.metadata,
    }


async def create_conversation(request: Request) -> Response:
    """POST /v1/conversations (optional initial `items`, `metadata`)."""
    store: Store = request.app.state.store
    body = await read_json(request)
    items = validate.array(body, "items") or []
    conversation = Conversation(new_id("conv_"), store.now(), validate.metadata(body) or {})
    conversation.items = [(normalize_item(item, f"items[{i}]"), None) for i, item in enumerate(items)]
    store.conversations[conversation.id] = conversation
    return json_response(render(conversation))


async def retrieve_conversation(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}."""
    store: Store = request.app.state.store
    return json_response(render(get_conversation(store, request.path_params["conversation_id"])))


async def update_conversation(request: Request) -> Response:
    """POST /v1/conversations/{conversation_id} (metadata)."""
    store: Store = request.app.state.store
    conversation = get_conversation(store, request.path_params["conversation_id"])
    body = await read_json(request, allow_empty=False)
    conversation.metadata = validate.metadata(body) or {}
    return json_response(render(conversation))


async def delete_conversation(request: Request) -> Response:
    """DELETE /v1/conversations/{conversation_id}."""
    store: Store = request.app.state.store
    conversation = get_conversation(store, request.path_params["conversation_id"])
    del store.conversations[conversation.id]
    return json_response({"id": conversation.id, "object": "conversation.deleted", "deleted": True})


async def list_items(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/items."""
    store: Store = request.app.state.store
    conversation = get_conversation(store, request.path_params["conversation_id"])
    items = visible_items(store, conversation)
    return json_response(paginate(items, request.query_params, lambda i: i, lambda i: i["id"]))


async def create_items(request: Request) -> Response:
    """POST /v1/conversations/{conversation_id}/items."""
    store: Store = request.app.state.store
    conversation = get_conversation(store, request.path_params["conversation_id"])
    body = await read_json(request, allow_empty=False)
    raw = validate.array(body, "items", required_=True) or []
    items = [normalize_item(item, f"items[{i}]") for i, item in enumerate(raw)]
    conversation.items.extend((item, None) for item in items)
    return json_response(
        {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        }
    )


async def retrieve_item(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/items/{item_id}."""
    store: Store = request.app.state.store
    conversation = get_conversation(store, request.path_params["conversation_id"])
    for item in visible_items(store, conversation):
        if item["id"] == request.path_params["item_id"]:
            return json_response(item)
    raise not_found("item", request.path_params["item_id"])


_CONV = "/v1/conversations/{conversation_id}"
ROUTES = [
    Route("/v1/conversations", create_conversation, methods=["POST"]),
    Route(_CONV, retrieve_conversation, methods=["GET"]),
    Route(_CONV, update_conversation, methods=["POST"]),
    Route(_CONV, delete_conversation, methods=["DELETE"]),
    Route(_CONV + "/items", list_items, methods=["GET"]),
    Route(_CONV + "/items", create_items, methods=["POST"]),
    Route(_CONV + "/items/{item_id}", retrieve_item, methods=["GET"]),
]
