"""Reading request bodies and writing JSON responses with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from emulator.errors import bad_request


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json", headers=headers)


def raw_json(body: bytes, headers: dict[str, str] | None = None) -> Response:
    """A JSON response from bytes already serialised (cached hot-path bodies)."""
    return Response(body, media_type="application/json", headers=headers)


async def read_json(request: Request, *, allow_empty: bool = True) -> dict[str, Any]:
    """The request's JSON object body; an empty body is `{}`; anything else is the API's 400."""
    raw = await request.body()
    if not raw.strip():
        if allow_empty:
            return {}
        raise bad_request("you must provide a JSON body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly.)"
        ) from None
    if not isinstance(body, dict):
        raise bad_request("Invalid type for request body: expected an object.")
    return body
