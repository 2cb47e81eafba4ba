"""Cursor pagination like the API's list endpoints: limit, order, after, before and has_more."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from emulator.errors import bad_request

T = TypeVar("T")


def page_params(query: Mapping[str, str], max_limit: int = 100) -> tuple[int, str, str | None, str | None]:
    """Parse and check `limit` (1..max, default 20), `order` (asc|desc, default desc), `after`, `before`."""
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise bad_request(
            f"Invalid 'limit': expected an integer, got '{raw_limit}'.", param="limit"
        ) from None
    if not 1 <= limit <= max_limit:
        raise bad_request(
            f"Invalid 'limit': integer out of range. Expected a value between 1 and {max_limit}, "
            f"got {limit}.",
            param="limit",
            code="integer_out_of_range",
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request(
            f"Invalid value for 'order': expected 'asc' or 'desc', got '{order}'.", param="order"
        )
    return limit, order, query.get("after") or None, query.get("before") or None


def paginate(
    items: Sequence[T],
    query: Mapping[str, str],
    render: Callable[[T], dict[str, Any]],
    id_of: Callable[[T], str],
    max_limit: int = 100,
) -> dict[str, Any]:
    """One page of `items` (held oldest first) as the API's list object, rendering only that page."""
    limit, order, after, before = page_params(query, max_limit)
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [id_of(item) for item in ordered]
    start, stop = 0, len(ordered)
    if after is not None:
        start = ids.index(after) + 1 if after in ids else len(ordered)
    if before is not None:
        stop = ids.index(before) if before in ids else 0
    window = ordered[start:stop]
    if before is not None and after is None:
        # `before` pages backwards: the items just before the cursor.
        page = window[-limit:]
        has_more = len(window) > limit
    else:
        page = window[:limit]
        has_more = len(window) > limit
    data = [render(item) for item in page]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
