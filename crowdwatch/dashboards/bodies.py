"""Request bodies read with a size limit and validated into a model: a bad body is a 4xx.

FastAPI's own body parsing reads a body of any size into memory; the dispatcher's forms are
a name, a password or a note, so anything over :data:`MAX_BODY_BYTES` is refused while it
streams in (413), unparsable JSON is a 400, and a body of the wrong shape a 422 that names
the field.

Text fields refuse NUL and unpaired surrogates (422): PostgreSQL's ``text`` cannot hold NUL and
UTF-8 cannot encode a lone surrogate, so either would otherwise fail deep in the database
driver or the password hash instead of at the door.  Messages quote at most
:data:`ECHO_CHARS` characters of what the client sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from fastapi import Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    create_model,
    field_validator,
)

MAX_BODY_BYTES = 16 * 1024
ECHO_CHARS = 40
"""Error messages quote at most this much of the client's input."""

Body = TypeVar("Body", bound=BaseModel)


def preview(value: object) -> str:
    """``repr`` of a client's value cut to :data:`ECHO_CHARS` characters, for error messages.

    Example:
        >>> preview("x" * 100)
        "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… (100 characters)"
    """
    text = str(value)
    if len(text) <= ECHO_CHARS:
        return repr(text)
    return f"{text[:ECHO_CHARS]!r}… ({len(text)} characters)"


# Declared in the OpenAPI schema only; _storable checks it with a message that says the fix.
NO_NUL: dict[str, JsonValue] = {"pattern": "^[^\\u0000]*$"}


NON_BLANK = "[^ \\t\\n\\r\\f\\v]"
"""A pattern met by text with a character other than ASCII white space."""

MAX_INT_DIGITS = 30


class _LongNumberError(ValueError):
    """An integer literal longer than any field takes."""


def _bounded_int(literal: str) -> int:
    # No field takes an integer of this size; refused before int() does work on it (and
    # before Python's own 4300-digit limit answers with advice meant for programmers).
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _LongNumberError(
            f"a number in the body has {len(literal.lstrip('-'))} digits; "
            f"at most {MAX_INT_DIGITS} are accepted"
        )
    return int(literal)


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL (\\u0000) characters; remove them")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "must be valid Unicode text (an unpaired surrogate such as \\ud800 is not)"
        ) from None
    return text


class BodyError(Exception):
    """A request body that cannot be used; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LoginBody(BaseModel):
    """``POST /api/login`` and ``/api/token``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=64,
        description="the dispatcher's user name",
        json_schema_extra=NO_NUL,
    )
    password: str = Field(
        min_length=1,
        max_length=256,
        description="the dispatcher's password",
        json_schema_extra=NO_NUL,
    )

    _text = field_validator("name", "password")(_storable)


class NoteBody(BaseModel):
    """``POST /api/alerts/{id}/acknowledge`` and ``/escalate``; an empty body is no note."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(
        default="",
        max_length=1000,
        description="recorded with the action",
        json_schema_extra=NO_NUL,
    )

    _text = field_validator("note")(_storable)


async def read_body(request: Request, model: type[Body], *, allow_empty: bool = False) -> Body:
    """The request's JSON body as ``model``.

    Args:
        request: the request.
        model: the pydantic model of the body.
        allow_empty: an empty body means ``{}``.

    Returns:
        The validated body.

    Raises:
        BodyError: 413 too large, 415 not JSON, 400 unparsable, 422 wrong shape.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyError(413, f"body of {declared} bytes is over the {MAX_BODY_BYTES} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(413, f"body is over the {MAX_BODY_BYTES} byte limit")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip() and allow_empty:
        raw = b"{}"
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if raw and media != "application/json":
        raise BodyError(415, f"expected an application/json body, got {media}")
    try:
        data = json.loads(raw, parse_int=_bounded_int)
    except _LongNumberError as exc:
        raise BodyError(422, str(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(400, f"body is not valid JSON: {exc}") from exc
    except RecursionError:
        # json nests by recursion: 16 KiB of "[[[[…" would otherwise be a 500.
        raise BodyError(400, "body is not valid JSON: nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p)[:ECHO_CHARS] for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise BodyError(422, problems) from exc


class DispatchBody(BaseModel):
    """``POST /api/alerts/{id}/dispatch``: buses sent on a route serving the stop.

    The served app takes :func:`dispatch_body`'s subclass, whose ``route`` is one of the
    configured routes (an enum in the OpenAPI schema).
    """

    model_config = ConfigDict(extra="forbid")

    route: str = Field(
        min_length=1, max_length=40, description="the route, e.g. 'K1'", json_schema_extra=NO_NUL
    )
    buses: int = Field(ge=1, le=20, description="how many buses were sent")
    note: str = Field(
        default="", max_length=1000, description="recorded with it", json_schema_extra=NO_NUL
    )

    _text = field_validator("route", "note")(_storable)


def dispatch_body(routes: Sequence[str]) -> type[DispatchBody]:
    """:class:`DispatchBody` whose ``route`` must be one of ``routes`` (none: any text)."""
    if not routes:
        return DispatchBody
    route_type: Any = Literal.__getitem__(tuple(routes))
    return create_model(
        "DispatchBody",
        __base__=DispatchBody,
        route=(route_type, Field(description="a configured route (transit.routes)")),
    )


class DeclineBody(BaseModel):
    """``POST /api/alerts/{id}/decline``: no bus sent, and why."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1,
        max_length=1000,
        # Some character that is not ASCII white space: the same rule in every regex dialect
        # (Python's str.strip and \s take more characters for space than JSON Schema's does).
        pattern=NON_BLANK,
        description="why no bus is sent (recorded, shown in the history)",
        json_schema_extra={"pattern": "^[^\\u0000]*[^\\u0000 \\t\\n\\r\\f\\v][^\\u0000]*$"},
    )

    _text = field_validator("reason")(_storable)
