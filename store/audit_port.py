"""What the audit asks of a store: a consistent snapshot of the events, their links, the seals.

Implemented by the recorders in ``store`` (SQLite, PostgreSQL, memory); the audit
logic (``audit/verify.py``) depends only on this module and the domain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from store.chain import Link, Seal


@dataclass(frozen=True)
class StoredRow:
    """One row of the events table, as stored."""

    originator_id: UUID | str
    originator_version: int
    notification_id: int
    topic: str
    state: bytes


class AuditReader(Protocol):
    """Reads inside one snapshot: every method sees the same committed state."""

    def events(self, ids: Sequence[UUID] | None = None) -> Iterator[StoredRow]:
        """Rows of the events table (of ``ids``, or all) ordered by (originator id, version)."""
        ...

    def links(self, ids: Sequence[UUID] | None = None) -> Iterator[Link]:
        """Rows of the chain table (of ``ids``, or all) ordered by (originator id, version)."""
        ...

    def seals(self) -> list[Seal]:
        """Every seal, in order."""
        ...

    def subject_streams(self, subject: str) -> list[UUID]:
        """The streams whose first event names ``subject`` (a USCC), in store order."""
        ...

    def max_notification_id(self) -> int:
        """The last notification id (0 when the store is empty)."""
        ...


@runtime_checkable
class AuditStore(Protocol):
    """A recorder that keeps the hash chain and the seals."""

    def audit_reader(self) -> AbstractContextManager[AuditReader]: ...

    def insert_seal(self, seal: Seal) -> None:
        """Store ``seal``; ``IntegrityError`` if its number is taken (a concurrent seal)."""
        ...


def id_order(originator_id: UUID | str) -> tuple[int, str]:
    """The order both stores sort originator ids in (uuid bytes / lower-case hex)."""
    if isinstance(originator_id, UUID):
        return originator_id.int, ""
    try:
        return UUID(originator_id).int, ""
    except ValueError:
        return -1, originator_id
