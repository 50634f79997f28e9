"""The projector: follows the store's notification log into the views, exactly once.

Each batch of notifications (``select_notifications``: polling works on SQLite too) is
applied in memory — provider events to cached :class:`~lifecycle.provider.Provider`
aggregates with the domain's own ``mutate`` (a cache miss loads the aggregate from the
repository at the version just before the event), so every row equals a replay by
construction — and then written in **one** transaction with the new position of every
view. The position is advanced by compare-and-set: a batch whose starting position is
no longer the stored one (another projector got there first) is rolled back entirely.

A projector follows the generation readers use (the ``view_generation`` pointer, read on
every batch), or a fixed generation (a rebuild or a verify fills its own).

Whatever the store accepted never stops the projector (ARCHITECTURE.md, "Nothing lost,
nothing stuck"): when a batch fails with anything but a transient database error,
its notifications are projected one at a time, and one that fails on its own — while the
views can still be written without it — is *set aside*: the views move past it and it is
listed in ``view_set_aside`` in the same transaction, logged (its id and topic, never its
content), counted in ``lifecycle_projection_set_aside_total`` and shown by ``lifecycle
projections status``. The batch and the notifications after it go on. An error that also
stops writing the views without it (the database, not the notification) is raised as
before, and ``run`` retries it with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Sequence

import psycopg
from eventsourcing.persistence import InterfaceError, Notification, OperationalError
from prometheus_client import Counter, Gauge

from lifecycle.application import ProviderLifecycle
from projections.database import Connection, PositionConflict, ViewDatabase, is_missing_table
from projections.generations import ensure_schema, live_generation, positions
from projections.projection import Changes, Projection
from projections.tables import VIEWS
from projections.writer import ViewWriter

log = logging.getLogger(__name__)

PROJECTION_POSITION = Gauge(
    "lifecycle_projection_position", "Last notification id applied to the views", ["view"]
)
PROJECTION_LAG = Gauge(
    "lifecycle_projection_lag", "Notifications in the store not yet in the views", ["view"]
)
PROJECTION_SET_ASIDE = Counter(
    "lifecycle_projection_set_aside_total",
    "Notifications the projector could not project and set aside (projections status)",
    ["error"],
)

#: The most of an error's text kept with a set-aside notification.
ERROR_CHARS = 1000


def describe_error(exc: BaseException) -> str:
    """``Type: message``, at most :data:`ERROR_CHARS` characters (for ``view_set_aside``)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


#: Errors worth retrying: the database went away, a lock timed out, a concurrent writer.
TRANSIENT: tuple[type[BaseException], ...] = (
    PositionConflict,
    sqlite3.OperationalError,
    psycopg.OperationalError,
    OperationalError,
    InterfaceError,
)

#: Deterministic, though ``OperationalError`` by class: a row larger than an index or a page
#: takes (SQLSTATE class 54, e.g. "index row requires 12016 bytes"). Retrying never helps.
PER_ROW: tuple[type[BaseException], ...] = (psycopg.errors.ProgramLimitExceeded,)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same batch may succeed (the database, not the notification)."""
    if isinstance(exc, PER_ROW) or isinstance(exc.__cause__, PER_ROW):
        return False
    return isinstance(exc, TRANSIENT)

# --- the projector ----------------------------------------------------------------------


class Projector:
    """Follows the notification log into the views of one generation, exactly once.

    ``generation=None`` follows the live generation (re-read before every batch, so a
    rebuild's switch-over is picked up); a number fills that generation only.
    """

    def __init__(
        self,
        app: ProviderLifecycle,
        db: ViewDatabase,
        *,
        generation: int | None = None,
        batch_size: int = 1000,
        idle_seconds: float = 0.2,
        cache_size: int = 100_000,
    ) -> None:
        self.app = app
        self.db = db
        self.fixed_generation = generation
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.projection = Projection(app, cache_size)
        self._conn: Connection | None = None
        self._generation: int | None = None
        self._position: int | None = None
        self._schema_checked = False

    # state

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self.db.connect()
        return self._conn

    @property
    def generation(self) -> int:
        """The generation this projector writes (the live one unless fixed)."""
        if not self._schema_checked:
            # Views made by an earlier version are brought up to date first, once.
            ensure_schema(self.db)
            self._schema_checked = True
        if self.fixed_generation is not None:
            return self.fixed_generation
        try:
            return live_generation(self.conn)
        except Exception as exc:
            if not (isinstance(exc, LookupError) or is_missing_table(exc)):
                raise
        ensure_schema(self.db)  # a store without views yet: generation 1
        return live_generation(self.conn)

    @property
    def position(self) -> int:
        """The views' common position in the current generation."""
        generation = self.generation
        if self._generation != generation or self._position is None:
            self._sync(generation)
        assert self._position is not None
        return self._position

    def head(self) -> int:
        return int(self.app.process_recorder.max_notification_id() or 0)

    def _sync(self, generation: int) -> None:
        stored = positions(self.conn, generation)
        missing = [v for v in VIEWS if v not in stored]
        if missing:
            raise LookupError(f"generation {generation} has no tracking for {missing}")
        values = {stored[v] for v in VIEWS}
        if len(values) != 1:
            raise RuntimeError(
                f"the views of generation {generation} are at different positions "
                f"({stored}); run `lifecycle projections rebuild`"
            )
        if self._generation != generation:
            self.projection.reset()
        self._generation = generation
        self._position = values.pop()

    def reset(self) -> None:
        """Forget the cache and the position (after a failed or conflicting batch)."""
        self.projection.reset()
        self._position = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # work

    def step(self, until: int | None = None) -> int:
        """Project one batch; how many notifications it held (0: caught up)."""
        position = self.position
        generation = self._generation
        assert generation is not None
        if until is not None and position >= until:
            return 0
        notifications = self.app.process_recorder.select_notifications(
            position + 1, self.batch_size, stop=until
        )
        if not notifications:
            return 0
        try:
            changes = self.projection.apply(notifications)
            ViewWriter(self.conn).write(generation, changes, position)
        except Exception as exc:
            # The cache may hold events whose rows were never committed.
            self.reset()
            if is_transient(exc):
                raise
            log.warning(
                "projection batch %d…%d failed (%s); projecting its notifications one by one",
                notifications[0].id,
                notifications[-1].id,
                type(exc).__name__,
            )
            self._one_by_one(generation, position, notifications)
        except BaseException:
            self.reset()
            raise
        else:
            self._position = changes.last
        if self.fixed_generation is None:
            for view in VIEWS:
                PROJECTION_POSITION.labels(view).set(self._position or 0)
        return len(notifications)

    def _one_by_one(
        self, generation: int, position: int, notifications: Sequence[Notification]
    ) -> None:
        """Project each notification in its own transaction; set aside one that fails alone."""
        for notification in notifications:
            try:
                changes = self.projection.apply([notification])
                ViewWriter(self.conn).write(generation, changes, position)
            except Exception as exc:
                self.reset()
                if is_transient(exc):
                    raise
                # Past it, with nothing of it written: if this fails too, the notification is
                # not what is wrong (raised, and retried as any failed batch).
                ViewWriter(self.conn).write(
                    generation,
                    Changes(notification.id, notification.id),
                    position,
                    set_aside=(notification.id, notification.topic, describe_error(exc)),
                )
                PROJECTION_SET_ASIDE.labels(type(exc).__name__).inc()
                # The id and topic only: the error's text may quote personal data.
                log.error(
                    "notification %d (%s) cannot be projected into generation %d: %s; "
                    "set aside (lifecycle projections status)",
                    notification.id,
                    notification.topic,
                    generation,
                    type(exc).__name__,
                )
            except BaseException:
                self.reset()
                raise
            position = notification.id
            self._position = position

    def catch_up(
        self,
        until: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Project until the head (or ``until``); how many notifications were applied.

        ``progress(position, head)`` is called after every batch.
        """
        total = 0
        conflicts = 0
        while True:
            try:
                n = self.step(until)
            except PositionConflict:
                conflicts += 1
                if conflicts > 100:
                    raise
                continue
            if n == 0:
                break
            total += n
            if progress is not None:
                progress(self.position, until if until is not None else self.head())
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the store until ``stop`` is set; transient errors are retried with backoff."""
        backoff = self.idle_seconds
        while not stop.is_set():
            try:
                n = await asyncio.to_thread(self.step)
                backoff = self.idle_seconds
                if self.fixed_generation is None:
                    lag = max(0, await asyncio.to_thread(self.head) - (self._position or 0))
                    for view in VIEWS:
                        PROJECTION_LAG.labels(view).set(lag)
            except TRANSIENT as exc:
                log.warning("projection batch failed, retrying: %s", exc)
                n = 0
                backoff = min(max(backoff * 2, 0.1), 5.0)
            except Exception:
                # Not expected: keep the rest of the service running, show it in the lag.
                log.exception("projection batch failed; retrying with backoff")
                n = 0
                backoff = min(max(backoff * 2, 0.5), 30.0)
            if n == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
