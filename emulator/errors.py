"""The API's error shape: `{"error": {"message", "type", "param", "code"}}`, raised as ApiError."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response


class ApiError(Exception):
    """An error the API reports to the client with a status code and the API's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        """The JSON body the API sends for this error."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    """Serialise an error in the API's shape."""
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def not_found(kind: str, object_id: str, param: str | None = None) -> ApiError:
    """The API's 404 for an unknown id, e.g. "No assistant found with id 'asst_x'."."""
    return ApiError(404, f"No {kind} found with id '{object_id}'.", param=param)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 invalid_request_error naming the offending parameter."""
    return ApiError(400, message, param=param, code=code)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette exception handler turning ApiError into the API's error response."""
    assert isinstance(exc, ApiError)
    return Response(exc.body(), status_code=exc.status, media_type="application/json", headers=exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer in the API's error shape too."""
    status: int = getattr(exc, "status_code", 500)
    detail: Any = getattr(exc, "detail", "")
    message = f"Invalid URL ({request.method} {request.url.path})" if status in (404, 405) else str(detail)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return Response(error_body(message, kind), status_code=status, media_type="application/json")
