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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg
import psycopg_pool

from projections.tables import Dialect
from store.sqlite import write_lock


class ViewsBusy(RuntimeError):
    """Another rebuild or verify holds the views' maintenance lock."""


class PositionConflict(RuntimeError):
    """The stored position moved under us: another projector wrote this generation."""


def utc_now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- connections ----------------------------------------------------------------------


class Connection:
    """A thin DB-API wrapper: ``?`` placeholders on both dialects, explicit transactions."""

    def __init__(self, raw: Any, dialect: Dialect, write_lock: Any = None) -> None:
        self.raw = raw
        self.dialect = dialect
        #: SQLite: the process's lock around writes on the file (``store.sqlite.write_lock``).
        self.write_lock = write_lock if write_lock is not None else contextlib.nullcontext()

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
        with self.write_lock if write else contextlib.nullcontext():
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
        return Connection(raw, "sqlite", write_lock(self.path))

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
            key = lock_key(name)
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


def lock_key(name: str) -> int:
    # A stable 63-bit key (Python's hash() is salted per process).
    value = 0
    for ch in f"provider-lifecycle:{name}".encode():
        value = (value * 131 + ch) % (2**62)
    return value


def is_missing_table(exc: BaseException) -> bool:
    """An error from querying a generation whose tables were dropped meanwhile."""
    return _is_missing_table(exc)
