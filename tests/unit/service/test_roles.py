"""Roles: parsing, the supervisor's backoff and log lines, leases, the SQLite store lock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app as cli
from service.roles import Backoff, RoleBoard, Supervisor, parse_roles, run_leased
from service.settings import Settings
from store.lease import LocalLease, StoreFileLock, StoreInUse, lease_key, open_lease
from store.sqlite import write_lock
from web.app import create_app


class FakeTime:
    """Virtual time: ``sleep`` waits until the test advances the clock past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + seconds, next(self._seq), future))
        await future

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self) -> float:
        """Let every task run, then wake the earliest live sleeper; returns the new time."""
        await self.settle()
        while self._heap:
            deadline, _, future = heapq.heappop(self._heap)
            if future.done():  # cancelled
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)
            await self.settle()
            return self.now
        raise AssertionError("nothing is sleeping")


class Flaky:
    """A role body that fails ``failures`` times, then runs until stopped."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.running = False

    async def __call__(self, stop: asyncio.Event) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"broker gone (attempt {self.calls})")
        self.running = True
        try:
            await stop.wait()
        finally:
            self.running = False


BACKOFF = Backoff(initial=0.5, cap=30.0, healthy_after=60.0, max_logs_per_minute=6)


def test_parse_roles() -> None:
    assert parse_roles("ingest,relay,project,api") == ("ingest", "relay", "project", "api")
    assert parse_roles(" api , relay ") == ("relay", "api")
    assert Settings().roles == "ingest,relay,project,api"
    with pytest.raises(ValueError, match="unknown role"):
        parse_roles("relay,sealer")
    with pytest.raises(ValueError, match="no role"):
        parse_roles(" , ")


async def test_a_body_that_fails_twice_is_restarted_with_growing_delays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "lifecycle.roles")
    time = FakeTime()
    body = Flaky(failures=2)
    board = RoleBoard(("ingest",))
    stop = asyncio.Event()
    supervisor = Supervisor(
        "ingest", body, board, backoff=BACKOFF, sleep=time.sleep, clock=time.clock
    )
    task = asyncio.create_task(supervisor.run(stop))

    assert await time.advance() == 0.5  # after the first failure
    assert await time.advance() == 1.5  # 1.0 s after the second
    assert body.calls == 3 and body.running
    # The backoffs (the other sleep is the restarted body's ``healthy_after`` watch).
    assert [s for s in time.sleeps if s != BACKOFF.healthy_after] == [0.5, 1.0]
    with pytest.raises(RuntimeError, match="restarting after ConnectionError"):
        board.checks()["ingest"]()  # not recovered yet
    assert await time.advance() == 61.5  # up for ``healthy_after``: recovered
    board.checks()["ingest"]()
    assert board.snapshot() == {"ingest": "running"}

    stop.set()
    await asyncio.wait_for(task, 1)
    assert body.calls == 3 and not body.running
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "ingest: started"
    assert sum("failed (ConnectionError" in m for m in messages) == 2
    assert "restarting in 0.5 s" in messages[1] and "restarting in 1.0 s" in messages[2]
    assert messages[3] == "ingest: recovered"
    assert len(messages) == 4


class VirtualTimeLog(logging.Handler):
    """Records each line with the virtual time it was written at."""

    def __init__(self, time: FakeTime) -> None:
        super().__init__()
        self.time = time
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((self.time.now, record.getMessage()))


async def test_backoff_is_capped_and_failure_lines_are_bounded_per_minute() -> None:
    time = FakeTime()
    logger = logging.getLogger("tests.roles.capped")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lines = VirtualTimeLog(time)
    logger.addHandler(lines)
    body = Flaky(failures=10_000)
    stop = asyncio.Event()
    supervisor = Supervisor(
        "relay", body, backoff=BACKOFF, sleep=time.sleep, clock=time.clock, logger=logger
    )
    task = asyncio.create_task(supervisor.run(stop))
    for _ in range(60):  # ~25 minutes of virtual time, restarting all along
        await time.advance()
    stop.set()
    await time.settle()
    await asyncio.wait_for(task, 1)

    backoffs = [s for s in time.sleeps if s != BACKOFF.healthy_after]
    assert backoffs[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert max(backoffs) == 30.0
    failed = [(at, m) for at, m in lines.lines if ": failed (" in m]
    assert body.calls > 50
    assert len(failed) < body.calls  # not one line per retry
    for at, _ in failed:  # at most six in any minute
        assert sum(at <= other < at + 60 for other, _ in failed) <= 6
    # A crash loop at the cap (one failure every 30 s) is fully logged; the burst at the
    # start (7 failures in its first minute: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s) says
    # how many lines it left out.
    assert failed[6] == (61.5, failed[6][1])
    assert "(1 more failures not logged)" in failed[6][1]
    assert not any("recovered" in m for _, m in lines.lines)


class FakeLease:
    def __init__(self) -> None:
        self.name = "relay"
        self.free = False
        self.alive = True
        self.holding = False
        self.down = False

    async def try_acquire(self) -> bool:
        if self.down:
            raise ConnectionError("store unreachable")
        if self.holding or self.free:
            self.holding, self.free = True, False
            self.alive = True
        return self.holding

    async def held(self) -> bool:
        if not self.alive:
            self.holding = False
        return self.holding

    async def release(self) -> None:
        self.holding = False


async def test_a_leased_role_stands_by_holds_and_stops_at_once_when_the_lease_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "lifecycle.roles")
    time = FakeTime()
    lease = FakeLease()
    body = Flaky(failures=0)
    board = RoleBoard(("relay",))
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_leased(
            "relay", lease, body, board, stop, backoff=BACKOFF, sleep=time.sleep, clock=time.clock
        )
    )
    await time.settle()
    assert board.snapshot() == {"relay": "standby"} and body.calls == 0
    await time.advance()  # retried: still taken
    await time.advance()
    assert body.calls == 0
    lease.free = True  # the holder died
    await time.advance()
    assert board.snapshot() == {"relay": "holding"} and body.running
    lease.alive = False  # its connection broke
    await time.advance()
    assert not body.running  # cancelled, not drained
    assert board.snapshot() == {"relay": "standby"}
    lease.down = True
    await time.advance()
    await time.advance()
    lease.down, lease.free = False, True
    await time.advance()
    assert body.running and body.calls == 2
    stop.set()
    await time.settle()
    await asyncio.wait_for(task, 1)
    assert not lease.holding  # released on the way out
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "relay: standby (another process holds the lease)",
        "relay: holding the lease",
        "relay: started",
        "relay: lost the lease; stopped, standing by",
        "relay: standby (another process holds the lease)",
        "relay: standby, lease unreachable (store unreachable)",
        "relay: holding the lease",
    ]


async def test_local_and_postgres_leases() -> None:
    lease = open_lease("sqlite:///x.db", "relay")
    assert isinstance(lease, LocalLease)
    assert await lease.try_acquire() and await lease.held()
    await lease.release()
    assert not await lease.held()
    assert type(open_lease("postgresql://u@h/db", "relay")).__name__ == "PostgresLease"
    assert lease_key("relay") != lease_key("project")
    assert -(2**63) <= lease_key("relay") < 2**63


def test_the_sqlite_store_lock_admits_one_process(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with (
        StoreFileLock(db),
        pytest.raises(StoreInUse, match=r"already uses the SQLite store .*store\.db"),
    ):
        StoreFileLock(db).acquire()
    with StoreFileLock(db):  # released: taken again
        pass


def test_a_second_run_on_one_sqlite_file_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with StoreFileLock(db):
        result = CliRunner().invoke(
            cli,
            ["run", "--role", "api"],
            env={"LIFECYCLE_STORE": f"sqlite:///{db}", "LIFECYCLE_KAFKA_BOOTSTRAP": "x:1"},
        )
    assert result.exit_code == 2, result.output
    assert "already uses the SQLite store" in result.output


def test_run_refuses_an_unknown_role() -> None:
    result = CliRunner().invoke(cli, ["run", "--role", "ingest,sealer"])
    assert result.exit_code == 2
    assert "unknown role" in result.output


def test_sqlite_writers_hold_the_process_write_lock_and_begin_immediate(tmp_path: Path) -> None:
    import sqlite3

    from lifecycle.application import ProviderLifecycle
    from store.url import persistence_env

    db = tmp_path / "store.db"
    application = ProviderLifecycle(env=persistence_env(f"sqlite:///{db}"))
    try:
        datastore = application.recorder.datastore  # type: ignore[attr-defined]
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        seen: dict[str, bool] = {}
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT 1")
            probe = threading.Thread(
                target=lambda: seen.update(free=write_lock(db).acquire(blocking=False))
            )
            probe.start()
            probe.join()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")  # SQLite's write lock is taken up front
        assert seen == {"free": False}
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()
        assert write_lock(db).acquire(blocking=False)
        write_lock(db).release()
    finally:
        application.close()


def test_readyz_shows_the_roles_and_fails_for_a_restarting_one() -> None:
    from tests.unit.web.fakes import FakeReadModel, auth, memory_inbox
    from tests.unit.web.fakes import Settings as ApiSettings

    board = RoleBoard(("relay", "project", "api"))
    board.set("relay", "holding")
    board.set("api", "running")
    app = create_app(
        FakeReadModel(),
        memory_inbox,
        ApiSettings(),
        readiness_checks={"store": lambda: None, **board.checks()},
        roles=board.snapshot,
    )
    client = TestClient(app)
    body = client.get("/readyz", headers=auth("reader")).json()
    assert body == {
        "status": "ready",
        "checks": {"store": "ok", "relay": "ok", "project": "ok", "api": "ok"},
        "roles": {"relay": "holding", "project": "standby", "api": "running"},
    }
    board.fail("relay", "restarting after ConnectionError: gone")
    down = client.get("/readyz", headers=auth("reader"))
    assert down.status_code == 503
    error = down.json()["error"]
    assert error["checks"]["relay"] == "unavailable: restarting after ConnectionError: gone"
    assert error["roles"]["relay"] == "holding"
