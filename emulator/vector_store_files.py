"""Vector-store files (create, list with `filter`, retrieve, update, delete) and file batches."""

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
from emulator.runs import poll_headers
from emulator.state import Store, new_id
from emulator.vector_store_model import (
    FileBatch,
    VectorStoreFile,
    add_file,
    batch_files,
    render_batch,
    render_file,
)
from emulator.vector_stores import chunking_strategy, get_store

MAX_BATCH_FILES = 2000
FILTERS = {"in_progress", "completed", "failed", "cancelled"}
MAX_ATTRIBUTES = 16


def _attributes(body: dict[str, Any], param: str = "attributes") -> dict[str, Any] | None:
    value = validate.obj(body, param)
    if value is None:
        return None
    if len(value) > MAX_ATTRIBUTES:
        raise bad_request(f"Invalid '{param}': at most {MAX_ATTRIBUTES} pairs.", param=param)
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool) or len(key) > 64:
            raise bad_request(f"Invalid '{param}.{key}': expected a string, number or boolean.", param=param)
    return dict(value)


def _get_vs_file(store: Store, request: Request) -> VectorStoreFile:
    vs = get_store(store, request.path_params["vector_store_id"])
    vs_file = vs.files.get(request.path_params["file_id"])
    if vs_file is None:
        raise not_found("file", request.path_params["file_id"])
    return vs_file


def _list(request: Request, files: list[VectorStoreFile]) -> Response:
    store: Store = request.app.state.store
    now = store.now()
    wanted = validate.one_of(dict(request.query_params), "filter", FILTERS)
    if wanted is not None:
        files = [f for f in files if f.status(now) == wanted]
    body = paginate(files, request.query_params, lambda f: render_file(f, now), lambda f: f.file_id)
    return json_response(body)


async def create_vs_file(request: Request) -> Response:
    """POST /v1/vector_stores/{vector_store_id}/files."""
    store: Store = request.app.state.store
    vs = get_store(store, request.path_params["vector_store_id"])
    body = await read_json(request, allow_empty=False)
    file_id = validate.string(body, "file_id", required_=True)
    get_file(store, file_id, "file_id")
    attributes, strategy = _attributes(body), chunking_strategy(body)
    vs_file = vs.files.get(file_id) or add_file(store, vs, file_id, attributes, strategy)
    return json_response(render_file(vs_file, store.now()))


async def list_vs_files(request: Request) -> Response:
    """GET /v1/vector_stores/{vector_store_id}/files[?filter=...]."""
    vs = get_store(request.app.state.store, request.path_params["vector_store_id"])
    return _list(request, list(vs.files.values()))


async def retrieve_vs_file(request: Request) -> Response:
    """GET /v1/vector_stores/{vector_store_id}/files/{file_id}."""
    store: Store = request.app.state.store
    vs_file = _get_vs_file(store, request)
    return json_response(render_file(vs_file, store.now()), headers=poll_headers(store))


async def update_vs_file(request: Request) -> Response:
    """POST /v1/vector_stores/{vector_store_id}/files/{file_id} (attributes)."""
    store: Store = request.app.state.store
    vs_file = _get_vs_file(store, request)
    body = await read_json(request, allow_empty=False)
    vs_file.attributes = _attributes(body) or {}
    return json_response(render_file(vs_file, store.now()))


async def delete_vs_file(request: Request) -> Response:
    """DELETE /v1/vector_stores/{vector_store_id}/files/{file_id} (the file itself stays)."""
    store: Store = request.app.state.store
    vs_file = _get_vs_file(store, request)
    del store.vector_stores[vs_file.vector_store_id].files[vs_file.file_id]
    return json_response({"id": vs_file.file_id, "object": "vector_store.file.deleted", "deleted": True})


def _batch_entries(store: Store, body: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, Any]]:
    """(file_id, attributes, chunking_strategy) for each file of a batch request."""
    file_ids = validate.array(body, "file_ids")
    files = validate.array(body, "files")
    if (file_ids is None) == (files is None):
        raise bad_request("Provide exactly one of 'file_ids' or 'files'.", param="file_ids")
    attributes, strategy = _attributes(body), chunking_strategy(body)
    if file_ids is not None:
        entries = [(fid, attributes, strategy) for fid in file_ids]
    else:
        entries = []
        for index, item in enumerate(files or []):
            if not isinstance(item, dict):
                raise bad_request(f"Invalid 'files[{index}]': expected an object.", param=f"files[{index}]")
            file_id = validate.string(item, "file_id", required_=True)
            entries.append((file_id, _attributes(item) or attributes, chunking_strategy(item) or strategy))
    if not entries:
        raise bad_request("Invalid 'file_ids': expected at least 1 file id.", param="file_ids")
    if len(entries) > MAX_BATCH_FILES:
        raise bad_request(
            f"Invalid 'file_ids': too many files. A batch takes at most {MAX_BATCH_FILES} file ids, "
            f"got {len(entries)}.",
            param="file_ids",
            code="array_above_max_length",
        )
    for index, (file_id, _, _) in enumerate(entries):
        if not isinstance(file_id, str):
            raise bad_request(f"Invalid 'file_ids[{index}]': expected a string.", param=f"file_ids[{index}]")
        get_file(store, file_id, f"file_ids[{index}]")
    return entries


async def create_batch(request: Request) -> Response:
    """POST /v1/vector_stores/{vector_store_id}/file_batches (at most 2,000 files)."""
    store: Store = request.app.state.store
    vs = get_store(store, request.path_params["vector_store_id"])
    entries = _batch_entries(store, await read_json(request, allow_empty=False))
    now = store.now()
    for file_id, attributes, strategy in entries:
        existing = vs.files.get(file_id)
        # A file that failed or was cancelled is indexed again when added again (how failed files are
        # retried); one already indexed or indexing stays as it is.
        if existing is None or existing.status(now) in ("failed", "cancelled"):
            add_file(store, vs, file_id, attributes, strategy)
    batch = FileBatch(new_id("vsfb_"), vs.id, store.now(), list(dict.fromkeys(e[0] for e in entries)))
    store.batches[batch.id] = batch
    return json_response(render_batch(store, batch, store.now()))


def _get_batch(store: Store, request: Request) -> FileBatch:
    vs = get_store(store, request.path_params["vector_store_id"])
    batch = store.batches.get(request.path_params["batch_id"])
    if batch is None or batch.vector_store_id != vs.id:
        raise not_found("file batch", request.path_params["batch_id"])
    return batch


async def retrieve_batch(request: Request) -> Response:
    """GET /v1/vector_stores/{vector_store_id}/file_batches/{batch_id}."""
    store: Store = request.app.state.store
    batch = _get_batch(store, request)
    return json_response(render_batch(store, batch, store.now()), headers=poll_headers(store))


async def cancel_batch(request: Request) -> Response:
    """POST .../file_batches/{batch_id}/cancel: files still indexing become cancelled."""
    store: Store = request.app.state.store
    batch = _get_batch(store, request)
    now = store.now()
    if render_batch(store, batch, now)["status"] != "in_progress":
        raise bad_request(f"Cannot cancel a batch with status '{render_batch(store, batch, now)['status']}'.")
    batch.cancelled_at = now
    for vs_file in batch_files(store, batch):
        if vs_file.status(now) == "in_progress":
            vs_file.cancelled_at = now
    return json_response(render_batch(store, batch, now))


async def list_batch_files(request: Request) -> Response:
    """GET .../file_batches/{batch_id}/files[?filter=...]."""
    store: Store = request.app.state.store
    return _list(request, batch_files(store, _get_batch(store, request)))


_VS = "/v1/vector_stores/{vector_store_id}"
_BATCH = _VS + "/file_batches/{batch_id}"
ROUTES = [
    Route(_VS + "/files", create_vs_file, methods=["POST"]),
    Route(_VS + "/files", list_vs_files, methods=["GET"]),
    Route(_VS + "/files/{file_id}", retrieve_vs_file, methods=["GET"]),
    Route(_VS + "/files/{file_id}", update_vs_file, methods=["POST"]),
    Route(_VS + "/files/{file_id}", delete_vs_file, methods=["DELETE"]),
    Route(_VS + "/file_batches", create_batch, methods=["POST"]),
    Route(_BATCH, retrieve_batch, methods=["GET"]),
    Route(_BATCH + "/cancel", cancel_batch, methods=["POST"]),
    Route(_BATCH + "/files", list_batch_files, methods=["GET"]),
]
