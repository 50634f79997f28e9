"""Leases: which process of many runs a single-active role (the relay, the projector).

A :class:`Lease` is tried, checked and released by the role's supervisor
(``service/roles.py``)::

    lease = open_lease(settings.store, "relay")
    if await lease.try_acquire():      # False: another process holds it (stand by, retry)
        ...                            # run the role while ``await lease.held()``
    await lease.release()

* PostgreSQL (:class:`PostgresLease`): a session-level advisory lock
  (``pg_try_advisory_lock``) on a connection of its own. The lock lives as long as that
  session: a holder killed with SIGKILL, or whose connection breaks, loses it at once, and a
  standby's next try takes it. ``held`` asks the session (``SELECT 1`` within a timeout).
* SQLite and memory (:class:`LocalLease`): one process per store (SQLite takes
  :class:`StoreFileLock` at start), so the lease is always held.

:class:`StoreFileLock` is an exclusive ``flock`` on ``<db file>.lock``: a second
``lifecycle run`` on the same SQLite file gets :class:`StoreInUse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import psycopg


class Lease(Protocol):
    """A named single-active lease on a store."""

    name: str

    async def try_acquire(self) -> bool:
        """Take the lease if free: True when held (now or already); False when another
        process holds it. Raises when the store cannot be reached."""
        ...

    async def held(self) -> bool:
        """Whether the lease is still held (its connection answers)."""
        ...

    async def release(self) -> None:
        """Give the lease up (idempotent)."""
        ...


def lease_key(name: str) -> int:
    """The advisory lock key of a lease: a stable signed 64-bit number from its name."""
    digest = hashlib.blake2b(f"provider-lifecycle.lease.{name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class PostgresLease:
    """A session-level advisory lock held on a dedicated connection."""

    def __init__(self, url: str, name: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.name = name
        self.key = lease_key(name)
        self.timeout = timeout
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._held = False

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._held = False
            self._conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self.timeout)),
                application_name=f"lifecycle-lease:{self.name}:{os.getpid()}",
                # A silent network loss is noticed within seconds, not TCP's minutes.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
            )
        return self._conn

    async def try_acquire(self) -> bool:
        if self._held and await self.held():
            return True
        try:
            conn = await self._connect()
            async with asyncio.timeout(self.timeout):
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                row = await cursor.fetchone()
        except BaseException:
            await self._drop()
            raise
        self._held = bool(row and row[0])
        return self._held

    async def held(self) -> bool:
        if not self._held or self._conn is None or self._conn.closed:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await self._conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError, OSError):
            await self._drop()
            return False
        return True

    async def release(self) -> None:
        if self._conn is not None and not self._conn.closed and self._held:
            with contextlib.suppress(psycopg.Error, TimeoutError, OSError):
                async with asyncio.timeout(self.timeout):
                    await self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        await self._drop()

    async def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class LocalLease:
    """Always held: the store has one process (SQLite, with :class:`StoreFileLock`) or is
    the process's own (memory)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._held = False

    async def try_acquire(self) -> bool:
        self._held = True
        return True

    async def held(self) -> bool:
        return self._held

    async def release(self) -> None:
        self._held = False


def open_lease(store: str, name: str) -> Lease:
    """The lease ``name`` on the store at ``store`` (a ``LIFECYCLE_STORE`` URL)."""
    if urlparse(store).scheme in ("postgresql", "postgres"):
        return PostgresLease(store, name)
    return LocalLease(name)


class StoreInUse(RuntimeError):
    """Another process holds the SQLite store's file lock."""


def sqlite_path(store: str) -> Path | None:
    """The database file of a ``sqlite:///…`` URL; None for any other store."""
    if urlparse(store).scheme != "sqlite":
        return None
    return Path(unquote(store.removeprefix("sqlite:///")))


class StoreFileLock:
    """An exclusive ``flock`` on ``<db file>.lock``, held until :meth:`release` or exit
    (the kernel drops it with the process, SIGKILL included)."""

    def __init__(self, db_file: Path) -> None:
        self.db_file = db_file
        self.path = db_file.with_name(db_file.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> StoreFileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise StoreInUse(
                f"another `lifecycle run` (pid {holder or '?'}) already uses the SQLite store "
                f"{self.db_file}: SQLite is one process on one host; stop it or "
                "use PostgreSQL to run several instances"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> StoreFileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
