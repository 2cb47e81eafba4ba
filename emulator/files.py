"""Files: upload (multipart), retrieve, content, delete, list (by purpose)."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.bodies import json_response
from emulator.errors import bad_request, not_found
from emulator.pagination import paginate
from emulator.state import Store, StoredFile, new_id

PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
MAX_LIST_LIMIT = 10_000


def get_file(store: Store, file_id: str, param: str | None = None) -> StoredFile:
    """The stored file, or the API's 404."""
    stored = store.files.get(file_id)
    if stored is None:
        raise not_found("file", file_id, param)
    return stored


async def upload_file(request: Request) -> Response:
    """POST /v1/files (multipart: `file` and `purpose`)."""
    store: Store = request.app.state.store
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Expected a multipart/form-data body with 'file' and 'purpose'.")
    async with request.form() as form:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise bad_request("Missing required parameter: 'file'.", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise bad_request("Missing required parameter: 'purpose'.", param="purpose")
        if purpose not in PURPOSES:
            raise bad_request(
                f"'{purpose}' is not one of {sorted(PURPOSES)} - 'purpose'",
                param="purpose",
                code="invalid_value",
            )
        content = await upload.read()
        filename = upload.filename or "file"
    obj = {
        "id": new_id("file-"),
        "object": "file",
        "bytes": len(content),
        "created_at": int(store.now()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
    }
    store.files[obj["id"]] = StoredFile(obj, content)
    request.app.state.counters.uploads[filename] += 1
    return json_response(obj)


async def list_files(request: Request) -> Response:
    """GET /v1/files, optionally by `purpose`."""
    store: Store = request.app.state.store
    purpose = request.query_params.get("purpose")
    items = [f.obj for f in store.files.values() if purpose is None or f.obj["purpose"] == purpose]
    body = paginate(items, request.query_params, lambda f: f, lambda f: f["id"], MAX_LIST_LIMIT)
    return json_response(body)


async def retrieve_file(request: Request) -> Response:
    """GET /v1/files/{file_id}."""
    return json_response(get_file(request.app.state.store, request.path_params["file_id"]).obj)


async def file_content(request: Request) -> Response:
    """GET /v1/files/{file_id}/content: the uploaded bytes."""
    stored = get_file(request.app.state.store, request.path_params["file_id"])
    return Response(stored.content, media_type="application/octet-stream")


async def delete_file(request: Request) -> Response:
    """DELETE /v1/files/{file_id}."""
    store: Store = request.app.state.store
    stored = get_file(store, request.path_params["file_id"])
    del store.files[stored.obj["id"]]
    return json_response({"id": stored.obj["id"], "object": "file", "deleted": True})


ROUTES = [
    Route("/v1/files", upload_file, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
]
