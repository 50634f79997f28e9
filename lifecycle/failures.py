"""What is the store's failure (retry the batch) and what is the record's (``internal_error``).

A record that cannot be judged for a reason of its own is ``malformed`` with reason
``internal_error: <Class: message>`` (bounded, control characters escaped); only the store's
own failures propagate, so the consumer rewinds and retries (CONTRACT.md 1.1).
"""

from __future__ import annotations

import re
from typing import Final

from eventsourcing.persistence import (
    ConnectionNotFromPoolError,
    ConnectionPoolClosedError,
    PersistenceError,
    RecordConflictError,
)

#: Database drivers whose errors are the store's, even when not translated by the library.
DRIVERS: Final = frozenset({"sqlite3", "psycopg", "psycopg2", "psycopg_pool"})
STORE_ERRORS: Final = (
    PersistenceError,
    RecordConflictError,
    ConnectionPoolClosedError,
    ConnectionNotFromPoolError,
)


def is_store_failure(exc: BaseException) -> bool:
    """A failure of the store (retry the batch), not of one record (``internal_error``).

    The library's ``PersistenceError`` family, and the DB drivers' own errors (recognised by
    their module: the domain imports no driver), also when they are the explicit cause.
    """
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, STORE_ERRORS):
            return True
        if any(c.__module__.split(".", 1)[0] in DRIVERS for c in type(seen).__mro__):
            return True
        seen = seen.__cause__
    return False


#: Longest ``internal_error`` reason kept (characters; the DLQ's ``x-error`` is ≤ 1 KiB).
INTERNAL_ERROR_LIMIT: Final = 400
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def storable(text: str) -> str:
    """``text`` as every store and view can hold it: lone surrogates and control characters
    (U+0000 above all) written as escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def internal_error(exc: BaseException) -> str:
    """The reason of a record that could not be judged: ``internal_error: <Class: message>``.

    Bounded; the message is the exception's own, about this record (nothing else is added).
    """
    message = str(exc)[: INTERNAL_ERROR_LIMIT * 2]
    text = storable(f"internal_error: {type(exc).__name__}: {message}".rstrip(": "))
    return text if len(text) <= INTERNAL_ERROR_LIMIT else text[: INTERNAL_ERROR_LIMIT - 1] + "…"


def readable(value: str | None) -> str | None:
    """``value`` if it can be written as UTF-8, else ``None`` (CONTRACT.md: ``"id": null``)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


#: The longest subject a malformed record keeps (a USCC has 18 characters).
SUBJECT_LIMIT: Final = 64


def subject_of(value: str | None) -> str | None:
    """The subject a malformed record is kept under, when it could name a provider.

    The hash chain indexes a record's subject (``store/chain.py``): one with U+0000 (which
    PostgreSQL text cannot hold) or thousands of characters would fail the whole batch's
    transaction, again on every retry. Such a record keeps its bytes, not the subject.
    """
    value = readable(value)
    if value is None or len(value) > SUBJECT_LIMIT or CONTROL.search(value):
        return None
    return value


class Unjudgeable(RuntimeError):
    """The provider's state could not be rebuilt after an internal error earlier in the batch."""
