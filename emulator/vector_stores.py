"""Vector stores: create, retrieve, update, delete, list."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import validate
from emulator.bodies import json_response, read_json
from emulator.errors import bad_request, not_found
from emulator.files import get_file
from emulator.pagination import paginate
from emulator.state import Store, new_id
from emulator.vector_store_model import VectorStore, add_file, render_store


def get_store(store: Store, vector_store_id: str) -> VectorStore:
    """The vector store, or the API's 404."""
    vs = store.vector_stores.get(vector_store_id)
    if vs is None:
        raise not_found("vector store", vector_store_id)
    return vs


def expires_after(body: dict[str, Any]) -> dict[str, Any] | None:
    """`expires_after`: {"anchor": "last_active_at", "days": 1..365}."""
    value = validate.obj(body, "expires_after")
    if value is None:
        return None
    days = value.get("days")
    if value.get("anchor") != "last_active_at" or not isinstance(days, int) or not 1 <= days <= 365:
        raise bad_request(
            "Invalid 'expires_after': expected {'anchor': 'last_active_at', 'days': 1..365}.",
            param="expires_after",
        )
    return {"anchor": "last_active_at", "days": days}


def chunking_strategy(body: dict[str, Any], param: str = "chunking_strategy") -> dict[str, Any] | None:
    """`chunking_strategy`: {"type": "auto"} or {"type": "static", "static": {...}} (checked loosely)."""
    value = validate.obj(body, param)
    if value is not None and value.get("type") not in ("auto", "static"):
        raise bad_request(f"Invalid '{param}.type': expected 'auto' or 'static'.", param=f"{param}.type")
    return value


async def create_vector_store(request: Request) -> Response:
    """POST /v1/vector_stores, optionally with `file_ids` to attach."""
    store: Store = request.app.state.store
    body = await read_json(request)
    file_ids = validate.array(body, "file_ids") or []
    for index, file_id in enumerate(file_ids):
        get_file(store, file_id, f"file_ids[{index}]")
    now = store.now()
    vs = VectorStore(
        id=new_id("vs_"),
        created=now,
        name=validate.string(body, "name") or "",
        metadata=validate.metadata(body) or {},
        expires_after=expires_after(body),
        last_active=now,
    )
    strategy = chunking_strategy(body)
    for file_id in file_ids:
        add_file(store, vs, file_id, None, strategy)
    store.vector_stores[vs.id] = vs
    return json_response(render_store(vs, now))


async def retrieve_vector_store(request: Request) -> Response:
    """GET /v1/vector_stores/{vector_store_id}."""
    store: Store = request.app.state.store
    vs = get_store(store, request.path_params["vector_store_id"])
    return json_response(render_store(vs, store.now()))


async def update_vector_store(request: Request) -> Response:
    """POST /v1/vector_stores/{vector_store_id} (name, expires_after, metadata)."""
    store: Store = request.app.state.store
    vs = get_store(store, request.path_params["vector_store_id"])
    body = await read_json(request)
    if "name" in body:
        vs.name = validate.string(body, "name") or ""
    if "expires_after" in body:
        vs.expires_after = expires_after(body)
    if "metadata" in body:
        vs.metadata = validate.metadata(body) or {}
    return json_response(render_store(vs, store.now()))


async def delete_vector_store(request: Request) -> Response:
    """DELETE /v1/vector_stores/{vector_store_id}."""
    store: Store = request.app.state.store
    vs = get_store(store, request.path_params["vector_store_id"])
    del store.vector_stores[vs.id]
    return json_response({"id": vs.id, "object": "vector_store.deleted", "deleted": True})


async def list_vector_stores(request: Request) -> Response:
    """GET /v1/vector_stores."""
    store: Store = request.app.state.store
    now = store.now()
    items = list(store.vector_stores.values())
    return json_response(
        paginate(items, request.query_params, lambda v: render_store(v, now), lambda v: v.id)
    )


ROUTES = [
    Route("/v1/vector_stores", create_vector_store, methods=["POST"]),
    Route("/v1/vector_stores", list_vector_stores, methods=["GET"]),
    Route("/v1/vector_stores/{vector_store_id}", retrieve_vector_store, methods=["GET"]),
    Route("/v1/vector_stores/{vector_store_id}", update_vector_store, methods=["POST"]),
    Route("/v1/vector_stores/{vector_store_id}", delete_vector_store, methods=["DELETE"]),
]
