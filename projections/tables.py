"""The views' tables: their columns, keys and indexes, per generation (``pv<n>_<table>``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

#: Free text is never indexed whole (ARCHITECTURE.md, "Traps": a PostgreSQL B-tree row holds
#: ~2.7 kB, and a company name, city or malformed record's subject may be any length): an
#: index holds its first ``INDEX_CHARS`` characters (at most 800 bytes of UTF-8), and a query
#: compares the whole value on the rows the index finds (:func:`bounded_equals`).
INDEX_CHARS = 200

#: A key column (part of a primary key) holds text up to ``KEY_CHARS`` characters as it is and
#: longer text in a bounded form (:func:`bounded_key`).
KEY_CHARS = 200


def prefix(column: str) -> str:
    """The indexed form of a free-text column: its first ``INDEX_CHARS`` characters."""
    return f"substr({column}, 1, {INDEX_CHARS})"


def bounded_equals(dialect: Dialect, column: str) -> str:
    """``column = ?`` through the prefix index; two placeholders, both the value compared.

    (SQLite plans a scan when the whole column is compared too, unless that comparison is
    kept off the index with a unary ``+``.)
    """
    whole = f"+{column}" if dialect == "sqlite" else column
    return f"{prefix(column)} = substr(?, 1, {INDEX_CHARS}) AND {whole} = ?"


def bounded_key(text: str) -> str:
    """Text as a key column holds it: itself up to ``KEY_CHARS`` characters; a longer one as
    its first characters, ``…`` and the SHA-256 of the whole (``KEY_CHARS + 1`` characters,
    so it never equals a text kept as it is)."""
    if len(text) <= KEY_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text[: KEY_CHARS - len(digest)] + "…" + digest


#: The views, each with its own tracking position.
VIEWS: tuple[str, ...] = ("provider", "requirements", "stats", "inbox", "timeline")


@dataclass(frozen=True)
class Table:
    """One table of a view: its columns (``name TYPE``), primary key and indexes (each a
    tuple of columns or expressions such as :func:`prefix`)."""

    view: str
    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)


def index_name(table: str, index: tuple[str, ...]) -> str:
    """``<table>_<parts>_ix``; a prefix expression is named ``<column>_prefix``."""
    parts = []
    for part in index:
        match = re.fullmatch(r"substr\((\w+), 1, \d+\)", part)
        parts.append(f"{match[1]}_prefix" if match else part)
    return f"{table}_{'_'.join(parts)}_ix"


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
        (("status",), (prefix("city"),), (prefix("company_name"),), ("updated_at",)),
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
        (("nid",), (prefix("subject"),), ("outcome",)),
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

#: Indexes of free text whole, made by earlier versions: dropped from existing generations
#: (``generations.upgrade_schema``) and replaced by the prefix indexes above.
RETIRED_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("provider", ("city",)),
    ("provider", ("company_name",)),
    ("inbox", ("subject",)),
)

#: Key columns that may hold free text: written as :func:`bounded_key` (a timeline row's
#: ``uscc`` is an inbound record's subject, a count's ``city`` the application's city).
BOUNDED_KEYS: dict[str, tuple[str, ...]] = {"timeline": ("uscc",), "counts": ("city",)}


def table_name(generation: int, table: str) -> str:
    return f"pv{int(generation)}_{table}"
