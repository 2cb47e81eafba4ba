"""The building blocks every request model shares: reusable annotated types and error reporting.

Holds the strict model config (unknown fields are errors), the constrained string and mapping types the
request models reuse (``NonEmptyStr``, ``IdempotencyKey``, ``FunctionName``, ``Metadata``, ``Attributes``,
built on the character rules of ``schemas.strings``), the count and size caps, and ``_Problems``, which
collects a model validator's errors and raises them together, each at the loc of the field it concerns,
with the helpers that report duplicate values.
"""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from annotated_types import MaxLen
from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.limits import (
    ATTRIBUTES_KEY_MAX,
    ATTRIBUTES_MAX_PAIRS,
    ATTRIBUTES_VALUE_MAX,
    FUNCTION_NAME_PATTERN,
    IDEMPOTENCY_KEY_MAX,
    METADATA_KEY_MAX,
    METADATA_MAX_PAIRS,
    METADATA_VALUE_MAX,
)
from schemas.strings import NAME, TEXT

# Every model forbids unknown fields, so a typo is an error naming the field rather than a silent no-op.
_STRICT = ConfigDict(extra="forbid")

Loc = tuple[str | int, ...]


class _Problems:
    """Errors found by a model validator, raised together, each at the loc of the field it concerns.

    A plain ValueError from a model validator would land at the model's root; a ValidationError raised
    inside a validator is merged by pydantic with its locs kept (and prefixed when the model is nested).
    """

    def __init__(self) -> None:
        self._errors: list[InitErrorDetails] = []

    def add(self, loc: Loc, error_type: str, message: str, value: Any) -> None:
        # The message is already formatted and no context is passed, so braces in ids are left alone.
        error = PydanticCustomError(error_type, message)
        self._errors.append(InitErrorDetails(type=error, loc=loc, input=value))

    def raise_if_any(self, title: str) -> None:
        if self._errors:
            raise ValidationError.from_exception_data(title, self._errors)


def _duplicates(values: Sequence[str]) -> list[tuple[int, str, int]]:
    """(index, value, index of its first occurrence) for every repeated value."""
    first_seen: dict[str, int] = {}
    repeats: list[tuple[int, str, int]] = []
    for index, value in enumerate(values):
        if value in first_seen:
            repeats.append((index, value, first_seen[value]))
        else:
            first_seen[value] = index
    return repeats


def _report_duplicates(problems: _Problems, field: str, values: Sequence[str], what: str = "") -> None:
    label = f"{field}: duplicate {what}".rstrip()
    for index, value, first in _duplicates(values):
        problems.add((field, index), "duplicate", f"{label} {value!r} (also at index {first})", value)


NonEmptyStr = Annotated[str, StringConstraints(min_length=1), NAME]
"""A name with at least one character and no control character (see ``schemas.strings.Name``)."""

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=IDEMPOTENCY_KEY_MAX), NAME]
"""A producer-chosen key: a second job with the same key returns the first job instead of a new one."""

FunctionName = Annotated[str, StringConstraints(pattern=FUNCTION_NAME_PATTERN), NAME]
"""A function tool's name as OpenAI allows it: a-z, A-Z, 0-9, _ and -, 1 to 64 characters."""


def _check_item_count(field: str, limit: int, noun: str) -> BeforeValidator:
    """A validator that refuses a list of more than `limit` items, naming `field`, the limit and the count."""

    def check(value: Any) -> Any:
        # Counted before the items are validated, so a huge list fails fast with the useful message.
        if isinstance(value, list | tuple) and len(value) > limit:
            raise PydanticCustomError(
                "too_many_items",
                "{field}: at most {limit} {noun}, got {count}",
                {"field": field, "limit": limit, "noun": noun, "count": len(value)},
            )
        return value

    return BeforeValidator(check)


def _check_request_size(request: BaseModel, limit: int, problems: _Problems) -> None:
    """Report a request whose JSON (compact UTF-8, None fields left out, as it is stored) passes `limit`."""
    size = len(request.__pydantic_serializer__.to_json(request, exclude_none=True))
    if size > limit:
        message = f"request: the request is {size:,} bytes as JSON; at most {limit:,} are accepted"
        problems.add((), "request_too_large", message, size)


def _check_pair_count(field: str, limit: int) -> BeforeValidator:
    """A validator that refuses a mapping with more than `limit` pairs, naming `field` and the limit."""

    def check(value: Any) -> Any:
        # Counted before the pairs are validated, so a huge map fails fast with the useful message.
        if isinstance(value, Mapping) and len(value) > limit:
            raise PydanticCustomError(
                "too_many_pairs",
                "{field}: at most {limit} pairs, got {count}",
                {"field": field, "limit": limit, "count": len(value)},
            )
        return value

    return BeforeValidator(check)


Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=METADATA_KEY_MAX), NAME],
        Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX), TEXT],
    ],
    MaxLen(METADATA_MAX_PAIRS),
    _check_pair_count("metadata", METADATA_MAX_PAIRS),
]
"""OpenAI metadata: at most 16 pairs, keys (names) of at most 64 characters, text values of at most 512."""

# The rule around the whole union, so a bad string is one error rather than one per branch.
AttributeValue = Annotated[
    Annotated[str, StringConstraints(max_length=ATTRIBUTES_VALUE_MAX)]
    | bool
    | int
    | Annotated[float, AllowInfNan(False)],
    TEXT,
]
"""A vector store file attribute value: a string of at most 512 characters, a number or a boolean."""

Attributes = Annotated[
    dict[Annotated[str, StringConstraints(max_length=ATTRIBUTES_KEY_MAX), NAME], AttributeValue],
    MaxLen(ATTRIBUTES_MAX_PAIRS),
    _check_pair_count("attributes", ATTRIBUTES_MAX_PAIRS),
]
"""Vector store file attributes: at most 16 pairs, keys of at most 64 characters."""
