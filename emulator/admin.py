"""The admin API under `/_emulator/...`, a path the real API does not use: faults, counters, profile."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import run_model
from emulator.bodies import json_response, read_json
from emulator.counters import Counters
from emulator.errors import bad_request, not_found
from emulator.faults import FaultInjector, Faults
from emulator.profile import Profile
from emulator.response_model import precise_response
from emulator.state import Store, StoredFile, new_id

PREFIX = "/_emulator"


def _invalid(exc: ValidationError) -> Exception:
    return bad_request(str(exc).replace("\n", " "), param=None)


async def health(request: Request) -> Response:
    """GET /_emulator/health."""
    return json_response({"ok": True})


async def get_faults(request: Request) -> Response:
    """GET /_emulator/faults: the faults in force."""
    injector: FaultInjector = request.app.state.faults
    return json_response(injector.faults.model_dump())


async def set_faults(request: Request) -> Response:
    """POST /_emulator/faults with Faults JSON; an empty body clears them."""
    injector: FaultInjector = request.app.state.faults
    try:
        injector.set(Faults.model_validate(await read_json(request)))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return json_response(injector.faults.model_dump())


async def clear_faults(request: Request) -> Response:
    """DELETE /_emulator/faults."""
    injector: FaultInjector = request.app.state.faults
    injector.set(Faults())
    return json_response(injector.faults.model_dump())


async def get_counters(request: Request) -> Response:
    """GET /_emulator/counters. "webhooks" also holds two gauges that a reset leaves alone: "pending", the
    deliveries not yet ended, and "scheduled", the end events of background responses still going."""
    counters: Counters = request.app.state.counters
    snapshot = counters.snapshot()
    dispatcher = request.app.state.webhooks
    snapshot["webhooks"].update(pending=dispatcher.pending, scheduled=dispatcher.scheduled)
    return json_response(snapshot)


async def reset(request: Request) -> Response:
    """POST /_emulator/reset: zero the counters and refill the rate-limit budgets; with `?state=1` also
    forget every object and abandon every webhook not yet delivered."""
    request.app.state.counters.reset()
    request.app.state.limits.reset()
    if request.query_params.get("state") in ("1", "true"):
        request.app.state.store.wipe()
        request.app.state.webhooks.abandon()
    return json_response({"ok": True})


async def get_profile(request: Request) -> Response:
    """GET /_emulator/profile."""
    return json_response(request.app.state.store.profile.model_dump())


async def put_profile(request: Request) -> Response:
    """PUT /_emulator/profile replaces the profile; PATCH merges fields into it."""
    store: Store = request.app.state.store
    body = await read_json(request)
    merged: dict[str, Any] = {**store.profile.model_dump(), **body} if request.method == "PATCH" else body
    try:
        store.set_profile(Profile.model_validate(merged))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return json_response(store.profile.model_dump())


def _age_object(store: Store, object_id: str, seconds: float) -> bool:
    """Move an object's creation (and last activity) back in time."""
    if object_id in store.threads:
        store.threads[object_id].created -= seconds
    elif object_id in store.vector_stores:
        vs = store.vector_stores[object_id]
        vs.created -= seconds
        vs.last_active -= seconds
    elif object_id in store.files:
        store.files[object_id].obj["created_at"] -= int(seconds)
    elif object_id in store.conversations:
        store.conversations[object_id].created -= seconds
    elif object_id in store.assistants:
        store.assistants[object_id]["created_at"] -= int(seconds)
    else:
        return False
    return True


async def age(request: Request) -> Response:
    """POST /_emulator/age {"id": ..., "seconds": N}: make an object look N seconds older."""
    body = await read_json(request, allow_empty=False)
    object_id, seconds = body.get("id"), body.get("seconds")
    if not isinstance(object_id, str) or not isinstance(seconds, int | float):
        raise bad_request("Expected {'id': str, 'seconds': number}.")
    if not _age_object(request.app.state.store, object_id, float(seconds)):
        raise not_found("object", object_id, "id")
    return json_response({"id": object_id, "aged_s": seconds})


def _wants(request: Request, status: str, ended: float | None) -> bool:
    if request.query_params.get("completed") in ("1", "true") and status != "completed":
        return False
    if request.query_params.get("ended") in ("1", "true") and ended is None:
        return False
    since = request.query_params.get("since")
    return not (since is not None and (ended is None or ended < float(since)))


async def run_detail(request: Request) -> Response:
    """GET /_emulator/runs/{run_id}: precise float timestamps and metadata."""
    store: Store = request.app.state.store
    run = store.runs.get(request.path_params["run_id"])
    if run is None:
        raise not_found("run", request.path_params["run_id"])
    run_model.settle(store, run, store.now())
    return json_response(run_model.precise(run))


async def run_details(request: Request) -> Response:
    """GET /_emulator/runs[?completed=1][&ended=1][&since=T]: precise details of many runs."""
    store: Store = request.app.state.store
    now = store.now()
    data = []
    for run in store.runs.values():
        run_model.settle(store, run, now)
        if _wants(request, run.status, run.ended):
            data.append(run_model.precise(run))
    return json_response({"object": "list", "data": data})


async def response_detail(request: Request) -> Response:
    """GET /_emulator/responses/{response_id}: precise float timestamps and metadata."""
    store: Store = request.app.state.store
    record = store.responses.get(request.path_params["response_id"])
    if record is None:
        raise not_found("response", request.path_params["response_id"])
    return json_response(precise_response(store, record))


async def response_details(request: Request) -> Response:
    """GET /_emulator/responses[?completed=1][&ended=1][&since=T]."""
    store: Store = request.app.state.store
    data = []
    for record in store.responses.values():
        detail = precise_response(store, record)
        if _wants(request, detail["status"], detail["ended_at_precise"]):
            data.append(detail)
    return json_response({"object": "list", "data": data})


MAX_BULK_FILES = 100_000


async def create_files(request: Request) -> Response:
    """POST /_emulator/files {"count": N, "prefix": "doc", "bytes": 64}: N `assistants` files at once.

    A shortcut for tests and benchmarks that need thousands of file ids without thousands of uploads;
    it is not an API request, so it leaves the request and upload counters alone.
    """
    store: Store = request.app.state.store
    body = await read_json(request, allow_empty=False)
    count, prefix, size = body.get("count"), body.get("prefix", "doc"), body.get("bytes", 64)
    if (
        not isinstance(count, int)
        or not 1 <= count <= MAX_BULK_FILES
        or not isinstance(size, int)
        or size < 1
    ):
        raise bad_request(f"Expected {{'count': 1..{MAX_BULK_FILES}, 'prefix': str, 'bytes': int >= 1}}.")
    now = int(store.now())
    ids = []
    for index in range(count):
        obj = {
            "id": new_id("file-"),
            "object": "file",
            "bytes": size,
            "created_at": now,
            "filename": f"{prefix}-{index}.txt",
            "purpose": "assistants",
            "status": "processed",
        }
        store.files[obj["id"]] = StoredFile(obj, b"x" * size)
        ids.append(obj["id"])
    return json_response({"object": "list", "data": ids})


async def get_timeline(request: Request) -> Response:
    """GET /_emulator/timeline: the traced routes' arrivals and 429s (see `Counters.timeline`)."""
    counters: Counters = request.app.state.counters
    return json_response(counters.timeline())


async def put_timeline(request: Request) -> Response:
    """PUT /_emulator/timeline with {"routes": ["POST /v1/responses", ...]}: trace those routes from now on
    (an empty list stops tracing)."""
    routes = (await read_json(request, allow_empty=False)).get("routes")
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise bad_request("Expected {'routes': ['METHOD /v1/template', ...]}.")
    counters: Counters = request.app.state.counters
    counters.trace(routes)
    return json_response(counters.timeline())


ROUTES = [
    Route(f"{PREFIX}/health", health, methods=["GET"]),
    Route(f"{PREFIX}/faults", get_faults, methods=["GET"]),
    Route(f"{PREFIX}/faults", set_faults, methods=["POST", "PUT"]),
    Route(f"{PREFIX}/faults", clear_faults, methods=["DELETE"]),
    Route(f"{PREFIX}/counters", get_counters, methods=["GET"]),
    Route(f"{PREFIX}/timeline", get_timeline, methods=["GET"]),
    Route(f"{PREFIX}/timeline", put_timeline, methods=["PUT"]),
    Route(f"{PREFIX}/reset", reset, methods=["POST"]),
    Route(f"{PREFIX}/profile", get_profile, methods=["GET"]),
    Route(f"{PREFIX}/profile", put_profile, methods=["PUT", "PATCH"]),
    Route(f"{PREFIX}/age", age, methods=["POST"]),
    Route(f"{PREFIX}/files", create_files, methods=["POST"]),
    Route(f"{PREFIX}/runs", run_details, methods=["GET"]),
    Route(f"{PREFIX}/runs/{{run_id}}", run_detail, methods=["GET"]),
    Route(f"{PREFIX}/responses", response_details, methods=["GET"]),
    Route(f"{PREFIX}/responses/{{response_id}}", response_detail, methods=["GET"]),
]
