"""The views' tables: their columns, keys and indexes, per generation (``pv<n>_<table>``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

#: The views, each with its own tracking position.
VIEWS: tuple[str, ...] = ("provider", "requirements", "stats", "inbox", "timeline")


@dataclass(frozen=True)
class Table:
    """One table of a view: its columns (``name TYPE``) and primary key."""

    view: str
    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)


# Types: TEXT, BIGINT, INT, BOOL, DATE (DATE is TEXT 'YYYY-MM-DD' on SQLite).
TABLES: tuple[Table, ...] = (
    Table(
        "provider",
        "provider",
        (
            ("uscc", "TEXT NOT NULL"),
            ("company_name", "TEXT"),
            ("city", "TEXT"),
            ("status", "TEXT"),
            ("deposit_balance_fen", "BIGINT NOT NULL"),
            ("deposit_shortfall_fen", "BIGINT NOT NULL"),
            ("violations", "INT NOT NULL"),
            ("tenure_open", "BOOL NOT NULL"),
            ("permanent", "BOOL NOT NULL"),
            ("manual_review", "BOOL NOT NULL"),
            ("blocked_until", "DATE"),
            ("requires_a11", "BOOL NOT NULL"),
            ("clause", "TEXT"),
            ("version", "INT NOT NULL"),
            ("updated_at", "TEXT"),
            ("doc", "TEXT NOT NULL"),
        ),
        ("uscc",),
        (("status",), ("city",), ("company_name",), ("updated_at",)),
    ),
    Table(
        "provider",
        "eligibility",
        (
            ("uscc", "TEXT NOT NULL"),
            ("n", "INT NOT NULL"),
            ("valid_from", "DATE NOT NULL"),
            ("valid_to", "DATE NOT NULL"),
            ("can_apply", "BOOL"),
            ("clause", "TEXT"),
        ),
        ("uscc", "n"),
    ),
    Table(
        "requirements",
        "requirement",
        (
            ("uscc", "TEXT NOT NULL"),
            ("n", "INT NOT NULL"),
            ("clause", "TEXT NOT NULL"),
            ("reason", "TEXT NOT NULL"),
            ("who", "TEXT NOT NULL"),
            ("by_day", "DATE"),
            ("until_day", "DATE"),
        ),
        ("uscc", "n"),
        (("who",), ("clause",)),
    ),
    Table(
        "stats",
        "counts",
        (("city", "TEXT NOT NULL"), ("status", "TEXT NOT NULL"), ("n", "BIGINT NOT NULL")),
        ("city", "status"),
    ),
    Table(
        "stats",
        "daily",
        (
            ("day", "DATE NOT NULL"),
            ("kind", "TEXT NOT NULL"),
            ("n", "BIGINT NOT NULL"),
        ),
        ("day", "kind"),
    ),
    Table(
        "stats",
        "outcomes",
        (("outcome", "TEXT NOT NULL"), ("n", "BIGINT NOT NULL")),
        ("outcome",),
    ),
    Table(
        "inbox",
        "inbox",
        (
            ("record_id", "TEXT NOT NULL"),
            ("nid", "BIGINT NOT NULL"),
            ("outcome", "TEXT NOT NULL"),
            ("position", "TEXT NOT NULL"),
            ("ce_id", "TEXT"),
            ("subject", "TEXT"),
            ("type", "TEXT"),
            ("codes", "TEXT NOT NULL"),
            ("reason", "TEXT"),
            ("recorded_at", "TEXT NOT NULL"),
            ("resubmissions", "INT NOT NULL"),
        ),
        ("record_id",),
        (("nid",), ("subject",), ("outcome",)),
    ),
    Table(
        "timeline",
        "timeline",
        (
            ("uscc", "TEXT NOT NULL"),
            ("nid", "BIGINT NOT NULL"),
            ("sequence", "INT"),
            ("ce_id", "TEXT"),
            ("type", "TEXT"),
            ("time", "TEXT"),
            ("day", "DATE"),
            ("recorded_at", "TEXT NOT NULL"),
            ("outcome", "TEXT NOT NULL"),
            ("codes", "TEXT NOT NULL"),
            ("reason", "TEXT"),
            ("clauses", "TEXT NOT NULL"),
            ("source", "TEXT"),
        ),
        ("uscc", "nid"),
    ),
)

TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def table_name(generation: int, table: str) -> str:
    return f"pv{int(generation)}_{table}"
