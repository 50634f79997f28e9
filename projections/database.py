"""Where the views live: the event store's own database (SQLite file or PostgreSQL).

The views are written directly with ``sqlite3`` / ``psycopg`` so that a batch's view rows
and the views' tracking positions are committed in **one** transaction.

Tables
------
``view_generation``   the pointer row readers follow: ``('live', n)``;
``view_generations``  every generation and its state (building, live, retired, scratch);
``view_tracking``     ``(generation, view) → position`` (the last notification id applied);
``pv<n>_<table>``     the rows of generation ``n`` (see :data:`TABLES`).

A rebuild fills generation ``n + 1`` while ``n`` keeps serving, then moves the pointer
in one transaction; readers and the live projector read the pointer on every call.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import psycopg
import psycopg_pool

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


class ViewsBusy(RuntimeError):
    """Another rebuild or verify holds the views' maintenance lock."""


class PositionConflict(RuntimeError):
    """The stored position moved under us: another projector wrote this generation."""


def utc_now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- connections ----------------------------------------------------------------------


class Connection:
    """A thin DB-API wrapper: ``?`` placeholders on both dialects, explicit transactions."""

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def param(self, value: Any) -> Any:
        if self.dialect == "sqlite" and isinstance(value, date):
            return value.isoformat()
        return value

    def params(self, values: Sequence[Any]) -> Sequence[Any]:
        if self.dialect == "postgresql":
            return values
        return tuple(self.param(v) for v in values)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.raw.cursor()
        try:
            cur.execute(self._sql(sql), self.params(params))
            if cur.description is None:
                return []
            return [tuple(row) for row in cur.fetchall()]
        finally:
            cur.close()

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.raw.cursor()
        try:
            cur.execute(self._sql(sql), self.params(params))
            return int(cur.rowcount)
        finally:
            cur.close()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cur = self.raw.cursor()
        try:
            cur.executemany(self._sql(sql), [self.params(r) for r in rows])
        finally:
            cur.close()

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert: ``COPY`` on PostgreSQL (several times faster), a plain
        ``executemany`` on SQLite. Dates must already be ISO text on SQLite."""
        if not rows:
            return
        if self.dialect == "sqlite":
            self.raw.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                rows,
            )
            return
        with (
            self.raw.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def iterate(
        self, sql: str, params: Sequence[Any] = (), size: int = 2000
    ) -> Iterator[tuple[Any, ...]]:
        """Stream the rows of a query (a server-side cursor on PostgreSQL)."""
        if self.dialect == "postgresql":
            with self.raw.cursor(name=f"it_{id(self)}_{threading.get_ident()}") as cur:
                cur.itersize = size
                cur.execute(self._sql(sql), self.params(params))
                for row in cur:
                    yield tuple(row)
        else:
            cur = self.raw.cursor()
            try:
                cur.execute(sql, self.params(params))
                while True:
                    rows = cur.fetchmany(size)
                    if not rows:
                        return
                    for row in rows:
                        yield tuple(row)
            finally:
                cur.close()

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True, snapshot: bool = False) -> Iterator[Connection]:
        """One transaction; on SQLite a writer takes the lock up front (``BEGIN IMMEDIATE``).

        ``snapshot``: every read in it sees the same committed state (REPEATABLE READ on
        PostgreSQL; a deferred read transaction on SQLite in WAL mode).
        """
        if self.dialect == "postgresql":
            with self.raw.transaction():
                if snapshot:
                    self.raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield self
            return
        self.raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield self
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()


def _is_missing_table(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


class ViewDatabase:
    """The database that holds the event store and the views, by ``LIFECYCLE_STORE`` URL."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        parsed = urlparse(url)
        self.url = url
        self.pool_size = pool_size
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sqlite_connections: list[sqlite3.Connection] = []
        if parsed.scheme == "sqlite":
            self.dialect: Dialect = "sqlite"
            self.path = Path(unquote(url.removeprefix("sqlite:///")))
        elif parsed.scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
            self.path = Path()
        else:
            raise ValueError(
                f"views need a SQLite file or PostgreSQL store (sqlite:///…, postgresql://…), "
                f"not {url!r}"
            )

    # connections

    def connect(self) -> Connection:
        """A new connection of its own (the projector's writer, maintenance)."""
        if self.dialect == "postgresql":
            return Connection(psycopg.connect(self.url, autocommit=True), "postgresql")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA busy_timeout=30000")
        return Connection(raw, "sqlite")

    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        """A pooled connection for reads (one per thread on SQLite)."""
        if self.dialect == "postgresql":
            with self._lock:
                if self._pool is None:
                    self._pool = psycopg_pool.ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        kwargs={"autocommit": True},
                        open=True,
                    )
            with self._pool.connection() as raw:
                yield Connection(raw, "postgresql")
            return
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._lock:
                self._sqlite_connections.append(conn.raw)
        yield conn

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            for raw in self._sqlite_connections:
                with contextlib.suppress(Exception):
                    raw.close()
            self._sqlite_connections.clear()
        self._local = threading.local()

    # locks

    @contextlib.contextmanager
    def exclusive(self, name: str = "views-maintenance") -> Iterator[None]:
        """Hold the maintenance lock (rebuild / verify) or raise :class:`ViewsBusy`."""
        if self.dialect == "postgresql":
            key = _lock_key(name)
            with psycopg.connect(self.url, autocommit=True) as raw:
                row = raw.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if not row or not row[0]:
                    raise ViewsBusy(f"another {name} is running on this store")
                try:
                    yield
                finally:
                    raw.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return
        lock_path = self.path.with_name(self.path.name + f".{name}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ViewsBusy(f"another {name} is running on this store") from exc
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _lock_key(name: str) -> int:
    # A stable 63-bit key (Python's hash() is salted per process).
    value = 0
    for ch in f"provider-lifecycle:{name}".encode():
        value = (value * 131 + ch) % (2**62)
    return value


# --- schema ---------------------------------------------------------------------------


def _type(dialect: Dialect, spec: str) -> str:
    words = spec.split(" ", 1)
    kind = words[0]
    rest = (" " + words[1]) if len(words) > 1 else ""
    if kind == "BOOL":
        kind = "BOOLEAN"
    elif kind == "DATE" and dialect == "sqlite":
        kind = "TEXT"
    elif kind == "INT":
        kind = "INTEGER"
    return kind + rest


def _create_meta(conn: Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS view_generation ("
        "name TEXT PRIMARY KEY, generation INTEGER NOT NULL, switched_at TEXT)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS view_generations ("
        "generation INTEGER PRIMARY KEY, state TEXT NOT NULL, created_at TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS view_tracking ("
        "generation INTEGER NOT NULL, view TEXT NOT NULL, position BIGINT NOT NULL, "
        "PRIMARY KEY (generation, view))"
    )


def _schema_lock(conn: Connection) -> None:
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key("views-schema"),))


def create_generation_tables(conn: Connection, generation: int) -> None:
    for table in TABLES:
        name = table_name(generation, table.name)
        columns = ", ".join(f"{c} {_type(conn.dialect, t)}" for c, t in table.columns)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} ({columns}, PRIMARY KEY ({', '.join(table.key)}))"
        )
        for index in table.indexes:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {name}_{'_'.join(index)}_ix "
                f"ON {name} ({', '.join(index)})"
            )


def drop_generation_tables(conn: Connection, generation: int) -> None:
    for table in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table_name(generation, table.name)}")
    conn.execute("DELETE FROM view_tracking WHERE generation=?", (generation,))
    conn.execute("DELETE FROM view_generations WHERE generation=?", (generation,))


def ensure_schema(db: ViewDatabase) -> int:
    """Create the meta tables and generation 1 if there is none; the live generation."""
    conn = db.connect()
    try:
        live = _try_live(conn)
        if live is not None:
            return live
        with conn.transaction():
            _schema_lock(conn)
            _create_meta(conn)
            rows = conn.execute("SELECT generation FROM view_generation WHERE name='live'")
            if rows:
                return int(rows[0][0])
            generation = _allocate(conn, "live")
            conn.execute(
                "INSERT INTO view_generation (name, generation, switched_at) VALUES ('live', ?, ?)",
                (generation, utc_now_text()),
            )
            return generation
    finally:
        conn.close()


def _try_live(conn: Connection) -> int | None:
    try:
        rows = conn.execute("SELECT generation FROM view_generation WHERE name='live'")
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return None
    return int(rows[0][0]) if rows else None


def _allocate(conn: Connection, state: str) -> int:
    rows = conn.execute("SELECT COALESCE(MAX(generation), 0) FROM view_generations")
    generation = int(rows[0][0]) + 1
    conn.execute(
        "INSERT INTO view_generations (generation, state, created_at) VALUES (?, ?, ?)",
        (generation, state, utc_now_text()),
    )
    create_generation_tables(conn, generation)
    conn.executemany(
        "INSERT INTO view_tracking (generation, view, position) VALUES (?, ?, 0)",
        [(generation, view) for view in VIEWS],
    )
    return generation


def new_generation(db: ViewDatabase, state: Literal["building", "scratch"]) -> int:
    """A new, empty generation (tables and tracking at 0) that readers do not see yet."""
    ensure_schema(db)
    conn = db.connect()
    try:
        with conn.transaction():
            _schema_lock(conn)
            return _allocate(conn, state)
    finally:
        conn.close()


def live_generation(conn: Connection) -> int:
    rows = conn.execute("SELECT generation FROM view_generation WHERE name='live'")
    if not rows:
        raise LookupError("no live view generation: run the projector or a rebuild")
    return int(rows[0][0])


def positions(conn: Connection, generation: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT view, position FROM view_tracking WHERE generation=?", (generation,)
    )
    return {str(view): int(position) for view, position in rows}


def generations(conn: Connection) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        "SELECT generation, state, created_at FROM view_generations ORDER BY generation"
    )
    return [(int(g), str(s), str(c)) for g, s, c in rows]


def switch_live(db: ViewDatabase, generation: int, keep: int = 1) -> int:
    """Point readers at ``generation`` in one transaction; the previous live generation.

    The previous generation is kept (``retired``) for readers still on it; older retired
    generations beyond ``keep`` are dropped.
    """
    conn = db.connect()
    try:
        with conn.transaction():
            _schema_lock(conn)
            previous = live_generation(conn)
            conn.execute(
                "UPDATE view_generation SET generation=?, switched_at=? WHERE name='live'",
                (generation, utc_now_text()),
            )
            conn.execute(
                "UPDATE view_generations SET state='retired' WHERE generation=?", (previous,)
            )
            conn.execute(
                "UPDATE view_generations SET state='live' WHERE generation=?", (generation,)
            )
        retired = [g for g, state, _ in generations(conn) if state == "retired"]
        for old in sorted(retired, reverse=True)[keep:]:
            with conn.transaction():
                _schema_lock(conn)
                drop_generation_tables(conn, old)
        return previous
    finally:
        conn.close()


def drop_generation(db: ViewDatabase, generation: int) -> None:
    conn = db.connect()
    try:
        with conn.transaction():
            _schema_lock(conn)
            if _try_live(conn) == generation:
                raise ValueError(f"generation {generation} is live")
            drop_generation_tables(conn, generation)
    finally:
        conn.close()


def drop_unfinished(db: ViewDatabase) -> list[int]:
    """Drop generations left ``building`` or ``scratch`` by an interrupted rebuild / verify.

    Call only while holding :meth:`ViewDatabase.exclusive`.
    """
    conn = db.connect()
    try:
        stale = [g for g, state, _ in generations(conn) if state in ("building", "scratch")]
    finally:
        conn.close()
    for generation in stale:
        drop_generation(db, generation)
    return stale


__all__ = [
    "TABLES",
    "VIEWS",
    "Connection",
    "PositionConflict",
    "Table",
    "ViewDatabase",
    "ViewsBusy",
    "ensure_schema",
    "live_generation",
    "new_generation",
    "positions",
    "switch_live",
    "table_name",
]


def is_missing_table(exc: BaseException) -> bool:
    """An error from querying a generation whose tables were dropped meanwhile."""
    return _is_missing_table(exc)
