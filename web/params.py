"""Query and path parameters shared by the API, the dashboard and the audit routes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final, Literal

from lifecycle.rules import business_date
from lifecycle.uscc import uscc_error
from web.auth import ApiError

InboxOutcome = Literal["refused", "malformed"]
MAX_LIMIT: Final = 200


def today() -> date:
    """Today's calendar date in Asia/Shanghai (the business calendar)."""
    return business_date(datetime.now(UTC))


def parse_as_of(value: str | None) -> date | None:
    if value is None or value == "":
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid_as_of", "as_of must be a calendar date, YYYY-MM-DD") from None


def check_uscc(uscc: str) -> None:
    problem = uscc_error(uscc)
    if problem is not None:
        raise ApiError(422, "invalid_uscc", f"not a valid USCC: {problem}")
