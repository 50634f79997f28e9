"""The projected views on the real PostgreSQL: equal to a replay (hypothesis), rebuild
while the live projector, a writer and readers keep going, verify, time travel, status.

Each test (and each hypothesis example) gets a database of its own.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lifecycle.application import InboundMessage, ProviderLifecycle
from projections.database import ViewDatabase
from projections.model import ProviderFilter
from projections.projector import Projector
from projections.reader import SqlReadModel
from projections.rebuild import rebuild, verify
from projections.tables import table_name
from service.cli_projections import projections_app
from service.demo import generate
from store.url import persistence_env
from tests.factories import exited, line, onboard, uscc, violation
from tests.integration.harness import fresh_database
from tests.oracle import assert_views_equal_replay
from tests.strategies import streams

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
DATES = [date(2024, 6, 1), date(2025, 6, 1), date(2026, 6, 30), date(2027, 6, 1)]


class Store:
    """The service's own store adapters (COPY recorder) on one database, plus the views."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.writer = ProviderLifecycle(env=persistence_env(url))
        self.reader = ProviderLifecycle(env=persistence_env(url))
        self.read_model = SqlReadModel(ViewDatabase(url), self.reader, clock=lambda: NOW)
        self.count = 0
        self.apps: list[ProviderLifecycle] = []
        self.projectors: list[Projector] = []

    def ingest(self, raws: list[bytes], batch: int = 500) -> None:
        for start in range(0, len(raws), batch):
            messages = []
            for raw in raws[start : start + batch]:
                self.count += 1
                messages.append(InboundMessage(raw, f"it:{self.count}"))
            self.writer.process(messages)

    def projector(self, **kw: Any) -> Projector:
        app = ProviderLifecycle(env=persistence_env(self.url))
        self.apps.append(app)
        projector = Projector(app, ViewDatabase(self.url), **kw)
        self.projectors.append(projector)
        return projector

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        for p in self.projectors:
            p.close()
        for app in self.apps:
            app.close()
        self.read_model.close()
        self.writer.close()
        self.reader.close()


@pytest.fixture
def store(postgres_admin_url: str) -> Iterator[Store]:
    with fresh_database(postgres_admin_url) as url:
        s = Store(url)
        yield s
        s.close()


demo_streams = st.builds(
    lambda seed, n: list(generate(providers=n, seed=seed)),
    st.integers(0, 100_000),
    st.integers(1, 30),
)


@given(
    raws=st.one_of(streams(), demo_streams),
    cuts=st.lists(st.integers(0, 400), max_size=3),
    batch=st.integers(1, 40),
)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_views_equal_a_fresh_replay_on_postgres_and_after_a_rebuild(
    postgres_admin_url: str, raws: list[bytes], cuts: list[int], batch: int
) -> None:
    with fresh_database(postgres_admin_url) as url:
        s = Store(url)
        try:
            projector = s.projector(batch_size=batch, cache_size=3)
            bounds = sorted({c % (len(raws) + 1) for c in cuts} | {0, len(raws)})
            for a, b in itertools.pairwise(bounds):
                s.ingest(raws[a:b])
                projector.step()
            projector.catch_up()
            assert_views_equal_replay(s.writer, s.read_model, DATES)
            before = s.read_model.generation
            rebuild(s.reader, ViewDatabase(url), batch_size=batch * 5)
            assert s.read_model.generation == before + 1
            assert_views_equal_replay(s.writer, s.read_model, DATES)
            assert verify(s.reader, ViewDatabase(url)).ok
        finally:
            s.close()


def test_rebuild_while_the_live_projector_a_writer_and_readers_keep_going(store: Store) -> None:
    lines = list(generate(providers=400, seed=21))
    first, later = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    store.ingest(first)
    live = store.projector(batch_size=100)
    live.catch_up()
    rm = store.read_model
    old = rm.generation
    sample = [i["uscc"] for i in rm.providers(ProviderFilter(), limit=20).items]
    assert len(sample) == 20

    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]
    generations_seen: set[int] = set()

    def guarded(work: Any) -> Any:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        return run

    @guarded
    def follow() -> None:  # the live projector, as ``lifecycle run`` would run it
        while not stop.is_set():
            if live.step() == 0:
                stop.wait(0.02)

    rebuilding = threading.Event()
    read_during_rebuild = threading.Event()
    wrote_during_rebuild = threading.Event()

    @guarded
    def read() -> None:
        while not stop.is_set():
            during = rebuilding.is_set()
            generations_seen.add(rm.generation)
            for u in sample:
                doc = rm.provider(u)
                assert doc is not None and doc["uscc"] == u and doc["timeline"]
            assert rm.stats()["outcomes"]["consumed"] > 0
            reads[0] += 1
            if during:
                read_during_rebuild.set()

    writes_done = threading.Event()

    @guarded
    def write() -> None:
        store_writer = ProviderLifecycle(env=persistence_env(store.url))
        try:
            assert rebuilding.wait(60)
            for start in range(0, len(later), 200):
                if start:
                    wrote_during_rebuild.set()
                store_writer.process(
                    [
                        InboundMessage(raw, f"it-later:{start + i}")
                        for i, raw in enumerate(later[start : start + 200])
                    ]
                )
        finally:
            store_writer.close()
            writes_done.set()

    threads = [threading.Thread(target=t) for t in (follow, read, write)]
    for t in threads:
        t.start()
    progress_calls = [0]

    def progress(position: int, head: int) -> None:
        progress_calls[0] += 1
        rebuilding.set()
        if progress_calls[0] == 1:
            # Make the overlap certain: the writer and a reader act while we rebuild.
            assert wrote_during_rebuild.wait(60) and read_during_rebuild.wait(60)
        assert rm.generation == old  # readers stay on the live generation until the switch

    try:
        report = rebuild(store.reader, ViewDatabase(store.url), batch_size=150, progress=progress)
        assert writes_done.wait(120)
        # Wait (a real condition, bounded) for the live projector to reach the head.
        deadline = time.monotonic() + 120
        while True:
            status = rm.status()
            if all(v.generation == report.generation and v.lag == 0 for v in status):
                break
            assert time.monotonic() < deadline, status
            assert not errors, errors
            stop.wait(0.05)
        # …and for the reader to have read from the new generation as well.
        while report.generation not in generations_seen:
            assert time.monotonic() < deadline and not errors, errors
            stop.wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert report.generation == old + 1 == rm.generation
    assert progress_calls[0] >= 2 and reads[0] > 0
    assert generations_seen == {old, report.generation}
    assert live.generation == report.generation
    assert_views_equal_replay(store.writer, rm, DATES)
    assert verify(store.reader, ViewDatabase(store.url)).ok


def test_verify_on_postgres_is_clean_then_detects_a_changed_row(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = uscc(11), uscc(12)
    store.ingest([line(e) for e in (*onboard(a), *onboard(b), violation(b), exited(a))])
    store.projector(batch_size=4).catch_up()
    monkeypatch.setenv("LIFECYCLE_STORE", store.url)
    runner = CliRunner()
    clean = runner.invoke(projections_app, ["verify", "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["ok"] is True

    g = store.read_model.generation
    store.sql(f"UPDATE {table_name(g, 'provider')} SET status = 'active' WHERE uscc = %s", (a,))
    dirty = runner.invoke(projections_app, ["verify", "--json"])
    assert dirty.exit_code == 1, dirty.output
    [difference] = json.loads(dirty.stdout)["differences"]
    assert difference == {
        "table": "provider",
        "key": {"uscc": a},
        "kind": "changed",
        "columns": {"status": {"live": "active", "rebuilt": "exited"}},
    }
    # No scratch generation is left behind.
    assert store.sql("SELECT generation, state FROM view_generations") == [(g, "live")]
    assert not store.sql(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (f"pv{g + 1}_%",)
    )


def test_time_travel_status_and_lag_on_postgres(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = uscc(13)
    store.ingest([line(e) for e in onboard(a, "2025-01-01")])
    store.ingest([line(exited(a, "2025-06-01"))])
    projector = store.projector(batch_size=2)
    projector.step()
    # 4 events and their idempotency-key markers
    assert {(v.position, v.head, v.lag) for v in store.read_model.status()} == {(2, 8, 6)}
    projector.catch_up()
    monkeypatch.setenv("LIFECYCLE_STORE", store.url)
    result = CliRunner().invoke(projections_app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert {(v["position"], v["lag"]) for v in json.loads(result.stdout)["views"]} == {(8, 0)}

    rm = store.read_model
    then = rm.provider(a, as_of=date(2025, 3, 1))
    assert then is not None and then["status"] == "active"
    assert then["eligibility"]["clause"] == "STATE"
    after = rm.provider(a, as_of=date(2025, 6, 1))
    assert after is not None and after["status"] == "exited"
    assert after["eligibility"]["from"] == "2025-11-28"
    # 1.1 (issue 9, "as of D means as of D everywhere"): before its first event the provider
    # has records, so it has a document with no status (404 only when nothing was recorded),
    # as in tests/unit/projections/test_views.py.
    before = rm.provider(a, as_of=date(2024, 12, 31))
    assert before is not None
    assert (before["status"], before["deposit_balance_fen"], before["violations"]) == (None, 0, 0)
    assert before["eligibility"]["can_apply"] is True and before["timeline"] == []
    assert rm.provider(uscc(14), as_of=date(2024, 12, 31)) is None  # nothing recorded
    allowed = rm.providers(ProviderFilter(can_apply=True, as_of=date(2025, 11, 28)))
    assert [i["uscc"] for i in allowed.items] == [a]
    assert rm.providers(ProviderFilter(can_apply=True, as_of=date(2025, 11, 27))).total == 0
