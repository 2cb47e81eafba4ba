"""The webhook part of the admin API: where events go, how they are signed and retried, which faults apply.

`urls`, `secret` and `retry` are the profile's `webhook_urls`, `webhook_secret` and `webhook_retry`; `faults`
are the dispatcher's. The counters are in `GET /_emulator/counters` under "webhooks".
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.bodies import json_response, read_json
from emulator.errors import bad_request
from emulator.faults import WebhookFaults
from emulator.profile import Profile
from emulator.state import Store, new_id
from emulator.webhooks import WebhookDispatcher

PREFIX = "/_emulator/webhooks"
MAX_EMIT = 100_000
EVENT_TYPES = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
_KEYS = {"urls": "webhook_urls", "secret": "webhook_secret", "retry": "webhook_retry"}


def _view(request: Request) -> dict[str, Any]:
    profile: Profile = request.app.state.store.profile
    dispatcher: WebhookDispatcher = request.app.state.webhooks
    return {
        "urls": profile.webhook_urls,
        "secret": profile.webhook_secret,
        "retry": profile.webhook_retry.model_dump(),
        "faults": dispatcher.faults.model_dump(),
    }


async def get_webhooks(request: Request) -> Response:
    """GET /_emulator/webhooks: {"urls", "secret", "retry", "faults"} in force."""
    return json_response(_view(request))


async def put_webhooks(request: Request) -> Response:
    """PUT /_emulator/webhooks with any of {"urls", "secret", "retry", "faults"}: each key given is replaced
    whole (fields left out of "retry" or "faults" take their defaults); keys not given stay as they are."""
    store: Store = request.app.state.store
    body = await read_json(request)
    unknown = set(body) - {*_KEYS, "faults"}
    if unknown:
        raise bad_request(f"Unknown keys {sorted(unknown)}; expected urls, secret, retry, faults.")
    updates = {_KEYS[key]: value for key, value in body.items() if key in _KEYS}
    try:
        profile = Profile.model_validate({**store.profile.model_dump(), **updates})
        faults = WebhookFaults.model_validate(body["faults"]) if "faults" in body else None
    except ValidationError as exc:
        raise bad_request(str(exc).replace("\n", " ")) from None
    store.set_profile(profile)
    if faults is not None:
        request.app.state.webhooks.set_faults(faults)
    return json_response(_view(request))


async def emit(request: Request) -> Response:
    """POST /_emulator/webhooks/emit {"count": N, "type": "response.completed", "id": "resp_..."}: N events.

    For measuring delivery and receivers: each event names `id`, or a fresh made-up response id when none is
    given (no such response exists then). Faults and retries apply as to any event.
    """
    body = await read_json(request)
    count, event_type, object_id = (
        body.get("count", 1),
        body.get("type", "response.completed"),
        body.get("id"),
    )
    if (
        not isinstance(count, int)
        or not 1 <= count <= MAX_EMIT
        or event_type not in EVENT_TYPES
        or not isinstance(object_id, str | None)
    ):
        raise bad_request(f"Expected {{'count': 1..{MAX_EMIT}, 'type': one of {EVENT_TYPES}, 'id': str}}.")
    dispatcher: WebhookDispatcher = request.app.state.webhooks
    now = request.app.state.store.now()
    ids = [dispatcher.emit(event_type, object_id or new_id("resp_"), now) for _ in range(count)]
    return json_response({"object": "list", "data": [i for i in ids if i is not None]})


ROUTES = [
    Route(PREFIX, get_webhooks, methods=["GET"]),
    Route(PREFIX, put_webhooks, methods=["PUT"]),
    Route(f"{PREFIX}/emit", emit, methods=["POST"]),
]
