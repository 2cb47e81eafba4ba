"""The string types request fields are made of, and the characters each refuses.

A request is stored in Redis as JSON, sent to OpenAI as JSON, and its paths are handed to the file
system. A character one of them cannot take must be refused when the job is submitted, naming the field,
or the job fails (or sticks) minutes later in a worker. The rules, from loosest to strictest:

- ``Text`` (message content, instructions, descriptions, tool outputs, metadata values): no NUL, which
  the API and the file system's C strings cannot hold, and no lone UTF-16 surrogate, which cannot be
  encoded as UTF-8 and so breaks the JSON the request travels as. Tab, newline and CR stay.
- ``Name`` (names, keys, paths, idempotency keys, models): also no C0 control character (U+0000-U+001F);
  a newline or escape code in an identifier is a mistake or an attack, never meant.
- ``Id`` (ids of OpenAI objects and of jobs): not empty, and also no whitespace, ``/``, ``\\``, ``?``,
  ``#`` or ``%`` and not ``.`` or ``..``: ids go into URL paths, where these would address another object.
- ``JsonObject`` / ``JsonArray`` (free-form options passed through to the API): JSON values only, every
  string and key under the ``Text`` rule, nested at most ``JSON_DEPTH_MAX`` deep.

Every refusal is a ``ValidationError`` at the field's loc whose message names the field, the character
(escaped) and its index, and says why it is refused.
"""

import math
import re
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Discriminator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    Tag,
    ValidationError,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from schemas.context import is_stored
from schemas.limits import JSON_DEPTH_MAX

# Each rule is one character class searched with re, which scans in C: that matters for 256,000-character
# messages.


def _why_refused(char: str) -> tuple[str, str]:
    """The error type and the reason for a character one of the patterns matched."""
    code = ord(char)
    if code == 0:
        return "nul_character", "NUL is refused in every string"
    if 0xD800 <= code <= 0xDFFF:
        return "surrogate_character", "a lone UTF-16 surrogate cannot be encoded as UTF-8"
    if code < 0x20:
        return "control_character", "control characters are refused in ids, names, paths and keys"
    return "url_character", "ids go into URL paths, so whitespace, /, \\, ?, # and % are refused in them"


class CharacterRule:
    """Characters a string field refuses, as an annotation: ``Annotated[str, StringConstraints(...), TEXT]``.

    It checks the input before pydantic's own string validation (which refuses a lone surrogate as
    "unable to parse raw data", without saying what it found) and before any length or pattern
    constraint. Input that is not a string passes untouched, to be refused by the type it meets; so the
    rule also works on a union (``Annotated[str | int, TEXT]``) with one error instead of one per branch.
    It adds its pattern and description to the JSON Schema for producers in other languages (a
    pattern the type already has, a function name's, is kept); surrogates cannot be written in a
    pattern, so the description says what the pattern cannot.
    """

    def __init__(
        self, refused: str, pattern: str, description: str, refuse_dot_segments: bool = False
    ) -> None:
        self.refused = re.compile(refused)
        self.pattern = pattern
        self.description = description
        self.refuse_dot_segments = refuse_dot_segments

    def check(self, value: Any, info: core_schema.ValidationInfo) -> Any:
        """``value`` unless it is a string holding a refused character: then an error naming the field,
        the character and its index, and why it is refused."""
        if not isinstance(value, str) or is_stored(info):
            return value
        field = info.field_name or "value"
        found = self.refused.search(value)
        if found is not None:
            error_type, reason = _why_refused(found.group())
            # Formatted here and passed without context, so braces in the field or value stay as they are.
            message = f"{field}: character {found.group()!a} at index {found.start()}; {reason}"
            raise PydanticCustomError(error_type, message)
        if self.refuse_dot_segments and value in (".", ".."):
            message = f"{field}: {value!r} is refused as an id (a dot segment in a URL path)"
            raise PydanticCustomError("url_character", message)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_before_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault("pattern", self.pattern)
        json_schema.setdefault("description", self.description)
        return json_schema


TEXT = CharacterRule("[\x00\ud800-\udfff]", "^[^\\u0000]*$", "No NUL and no lone UTF-16 surrogate.")
"""The ``Text`` rule: no NUL, no lone surrogate."""

NAME = CharacterRule(
    "[\x00-\x1f\ud800-\udfff]",
    "^[^\\u0000-\\u001f]*$",
    "No control character and no lone UTF-16 surrogate.",
)
"""The ``Name`` rule: the ``Text`` rule, and no C0 control character."""

ID = CharacterRule(
    "[\x00-\x1f\ud800-\udfff\\s/\\\\?#%]",
    "^[^\\u0000-\\u001f\\s/\\\\?#%]+$",
    "An id: no control character, whitespace, /, \\, ?, # or %, not . or .., no lone surrogate.",
    refuse_dot_segments=True,
)
"""The ``Id`` rule: the ``Name`` rule, and nothing that would change a URL path the id is put into."""

Text = Annotated[str, TEXT]
"""Free text: refuses NUL and lone UTF-16 surrogates; keeps tab, newline and carriage return."""

Name = Annotated[str, NAME]
"""A name, key or path: the ``Text`` rule, and no C0 control character."""

Id = Annotated[str, StringConstraints(min_length=1), ID]
"""The id of an OpenAI object or a job: not empty, the ``Name`` rule, nothing that changes a URL path."""


def _json_leaf_problem(value: Any) -> tuple[str, str] | None:
    """Why one JSON leaf (or object key) is refused, as (error type, reason), or None."""
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else ("json_value", f"{value} is not a JSON number")
    if isinstance(value, str):
        found = TEXT.refused.search(value)
        if found is None:
            return None
        error_type, reason = _why_refused(found.group())
        return error_type, f"character {found.group()!a} at index {found.start()}; {reason}"
    return "json_value", f"a {type(value).__name__} is not a JSON value"


def _json_problem(value: Any) -> tuple[tuple[str | int, ...], str, str] | None:
    """The first thing JSON cannot carry inside ``value``: (path to it, error type, reason), or None.

    Walks iteratively and stops at ``JSON_DEPTH_MAX``, so a cyclic or hostile structure is refused here
    rather than exhausting the stack of a worker's JSON encoder.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if not isinstance(item, dict | list):
            problem = _json_leaf_problem(item)
            if problem:
                return (path, *problem)
        elif len(path) >= JSON_DEPTH_MAX:
            return path, "json_depth", f"nested deeper than {JSON_DEPTH_MAX} levels"
        elif isinstance(item, list):
            stack.extend((child, (*path, index)) for index, child in reversed(list(enumerate(item))))
        else:
            for key in item:
                key_problem = (
                    _json_leaf_problem(key) if isinstance(key, str) else ("json_value", "not a string")
                )
                if key_problem:
                    return (path, key_problem[0], f"key {key!a}: {key_problem[1]}")
            stack.extend((child, (*path, key)) for key, child in reversed(item.items()))
    return None


def check_json(value: Any, info: core_schema.ValidationInfo) -> Any:
    """Refuse what JSON (or the API) cannot carry anywhere inside an object or array ``value``, at the loc
    of the first such; anything else passes untouched, to be refused by the container type it meets.

    Runs before pydantic's own validation, which would refuse a lone surrogate in a key without saying
    what it found, and would let anything through ``Any``.
    """
    if not isinstance(value, dict | list) or is_stored(info):
        return value
    found = _json_problem(value)
    if found is None:
        return value
    path, error_type, reason = found
    where = (info.field_name or "value") + "".join(f"[{step!r}]" for step in path)
    error = PydanticCustomError(error_type, f"{where}: {reason}")
    # Raised as a ValidationError so pydantic keeps the path inside the value, below the field's loc.
    raise ValidationError.from_exception_data(
        "JSON value", [InitErrorDetails(type=error, loc=path, input=None)]
    )


JsonObject = Annotated[dict[str, Any], BeforeValidator(check_json)]
"""A free-form JSON object passed through to the API: JSON values only, strings under the ``Text`` rule."""

JsonArray = Annotated[list[Any], BeforeValidator(check_json)]
"""A free-form JSON array passed through to the API: JSON values only, strings under the ``Text`` rule."""


def _text_or_object(value: Any) -> str:
    return "text" if isinstance(value, str) else "object"


TextOrObject = Annotated[
    Annotated[Text, Tag("text")] | Annotated[JsonObject, Tag("object")], Discriminator(_text_or_object)
]
"""``Text`` or a ``JsonObject`` (one error, for the shape given, rather than one per shape)."""

IdOrObject = Annotated[
    Annotated[Id, Tag("text")] | Annotated[JsonObject, Tag("object")], Discriminator(_text_or_object)
]
"""An ``Id`` or a ``JsonObject`` (one error, for the shape given, rather than one per shape)."""
