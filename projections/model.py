"""The read side's port: what the read API and the dashboard ask of the projections.

``projections/views.py`` implements :class:`ReadModel` on SQLite and PostgreSQL; the
API (``web/app.py``) depends only on this module. Documents are plain dicts,
ready for JSON; personal data (``contact``) is masked by the API, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

SortKey = Literal["uscc", "company_name", "city", "status", "updated_at", "-updated_at"]


@dataclass(frozen=True)
class ProviderFilter:
    status: str | None = None  # applied / admitted / active / exited / expelled / declined
    city: str | None = None  # service city
    can_apply: bool | None = None  # evaluated at ``as_of``
    q: str | None = None  # substring of company name or USCC
    as_of: date | None = None  # for ``can_apply``; default today (Asia/Shanghai)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class ViewStatus:
    name: str  # e.g. "provider", "requirements", "stats", "inbox"
    position: int  # last notification id applied
    head: int  # the store's last notification id
    generation: int  # table generation readers use (changes on rebuild)

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


@dataclass(frozen=True)
class InboxFilter:
    outcome: str | None = None  # refused / malformed
    code: str | None = None  # a clause code, e.g. "A1.3-5"
    subject: str | None = None  # a USCC
    type: str | None = None  # e.g. "provider.Applied"


class ReadModel(Protocol):
    """Queries over the projected views (all reads, no writes)."""

    def providers(
        self, f: ProviderFilter, *, offset: int = 0, limit: int = 50, sort: SortKey = "uscc"
    ) -> Page:
        """Provider list items: the ``provider`` document without the timeline."""
        ...

    def provider(self, uscc: str, as_of: date | None = None) -> dict[str, Any] | None:
        """One provider document, current (from the view) or as of a date (replayed).

        Keys: ``uscc``, ``company_name``, ``city``, ``status``, ``deposit_balance_fen``,
        ``deposit_shortfall_fen``, ``violations`` (int), ``violation_list``
        ([{clause, severity, on, id}]), ``eligibility`` (CONTRACT.md shape, at as_of),
        ``requirements`` ([{clause, reason, who, by}] — who is "provider" or "platform",
        by is a date or null), ``unmet`` ([{clause, reason}]), ``contact`` ({name, phone}),
        ``timeline`` ([{sequence?, id, type, time, outcome, codes, reason}] — every inbound
        record of the provider in store order, accepted or not), ``updated_at``.
        """
        ...

    def stats(self) -> dict[str, Any]:
        """``{"by_status": {...}, "by_city": {...}, "per_day": [{"day", "admitted",
        "exited", "expelled"}], "outcomes": {consumed, accepted, refused, malformed,
        duplicate}}``."""
        ...

    def inbox(self, f: InboxFilter, *, offset: int = 0, limit: int = 50) -> Page:
        """Refused and malformed records, newest first: ``{record, outcome, position, id,
        subject, type, codes, reason, recorded_at, resubmissions}``."""
        ...

    def status(self) -> list[ViewStatus]:
        """Each view's position, the store's head and lag."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot be reached (for ``/readyz``)."""
        ...


__all__ = [
    "InboxFilter",
    "Page",
    "ProviderFilter",
    "ReadModel",
    "SortKey",
    "ViewStatus",
    "field",
]
