"""Query and path parameters shared by the API, the dashboard and the audit routes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Final, Literal

from fastapi import Path, Query
from pydantic import WithJsonSchema

from lifecycle.rules import business_date
from lifecycle.schemas import USCC_PATTERN
from lifecycle.uscc import uscc_error
from web.auth import ApiError

InboxOutcome = Literal["refused", "malformed"]
MAX_LIMIT: Final = 200
#: The largest offset a store can skip to (PostgreSQL ``bigint``, SQLite's integer): a
#: larger one is a 422 (``invalid_request``), not an overflow in the store.
MAX_OFFSET: Final = 2**63 - 1

#: A text filter holds no U+0000: PostgreSQL text cannot (a 422, not a 500 from the store).
TEXT: Final = "^[^\\x00]*$"

# Parameters that the routes check themselves, so that a bad one is answered with the
# service's own error (``invalid_as_of``, ``invalid_uscc``, ``invalid_record_id``), are
# declared as plain strings and documented in OpenAPI with their real format here.
AS_OF_SCHEMA: Final = {"type": "string", "format": "date"}
USCC_SCHEMA: Final = {
    "type": "string",
    "minLength": 18,
    "maxLength": 18,
    "pattern": USCC_PATTERN,
    "description": "Unified Social Credit Code: 18 characters of the GB 32100-2015 alphabet, "
    "the last one the check character of the first 17 (else 422 invalid_uscc)",
}
RECORD_ID_SCHEMA: Final = {"type": "string", "format": "uuid"}

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items to answer at most")]
UsccPath = Annotated[str, WithJsonSchema(USCC_SCHEMA), Path(description=USCC_SCHEMA["description"])]
UsccQuery = Annotated[str | None, WithJsonSchema(USCC_SCHEMA)]
RecordIdPath = Annotated[
    str, WithJsonSchema(RECORD_ID_SCHEMA), Path(description="the inbox record's id (a UUID)")
]
#: ``as_of``: a date (YYYY-MM-DD), checked by :func:`parse_as_of`; add ``Query(description=…)``.
AsOf = Annotated[str | None, WithJsonSchema(AS_OF_SCHEMA)]


def today() -> date:
    """Today's calendar date in Asia/Shanghai (the business calendar)."""
    return business_date(datetime.now(UTC))


def parse_as_of(value: str | None, *, blank: bool = True) -> date | None:
    """``as_of`` as a date; ``None`` when absent (or, with ``blank``, empty: a form's field).

    The JSON API passes ``blank=False``: its OpenAPI document says ``format: date``, so an
    empty ``as_of=`` is a 422 there like any other string that is not a date.
    """
    if value is None or (blank and value == ""):
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid_as_of", "as_of must be a calendar date, YYYY-MM-DD") from None


def form_text(value: str | None, max_length: int) -> str | None:
    """A dashboard form's text filter: trimmed, at most ``max_length`` characters, without
    U+0000 (PostgreSQL text cannot hold it); ``None`` when nothing is left."""
    return (value or "").replace("\x00", "").strip()[:max_length] or None


def check_uscc(uscc: str) -> None:
    problem = uscc_error(uscc)
    if problem is not None:
        raise ApiError(422, "invalid_uscc", f"not a valid USCC: {problem}")
