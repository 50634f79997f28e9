"""The projected views on SQLite files: equal to a replay, exactly once, time travel,
status and lag, rebuild with switch-over, verify, filters, requirements.

The oracle (``test_projections_oracle``) replays the store through the domain; nothing
here compares the views' code with itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lifecycle.application import InboundMessage, ProviderLifecycle
from projections import projector as projector_module
from projections.database import PositionConflict, ViewDatabase
from projections.model import InboxFilter, ProviderFilter
from projections.projector import Projector
from projections.reader import SqlReadModel
from projections.rebuild import rebuild, verify
from projections.tables import table_name
from service.cli_projections import projections_app
from service.demo import generate
from tests.factories import (
    PERMANENT,
    admitted,
    applied,
    declined,
    deposit_deducted,
    deposit_paid,
    exited,
    expelled,
    line,
    onboard,
    sqlite_env,
    until,
    uscc,
    violation,
)
from tests.oracle import ALL, assert_views_equal_replay
from tests.strategies import streams

NOW = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)  # 2026-06-30 in Asia/Shanghai
DATES = [date(2025, 1, 1), date(2025, 7, 1), date(2026, 6, 30), date(2027, 3, 1), date(2029, 1, 1)]


@dataclass
class Store:
    """A SQLite store file with a writer, a read model and projectors, as in production."""

    path: Path

    def __post_init__(self) -> None:
        self.url = f"sqlite:///{self.path}"
        self.writer = ProviderLifecycle(env=sqlite_env(str(self.path)))
        self.reader = ProviderLifecycle(env=sqlite_env(str(self.path)))
        self.read_model = SqlReadModel(ViewDatabase(self.url), self.reader, clock=lambda: NOW)
        self._count = 0
        self._projectors: list[Projector] = []

    def ingest(self, *events: dict[str, Any] | bytes) -> None:
        messages = []
        for ev in events:
            self._count += 1
            messages.append(InboundMessage(line(ev), f"test:{self._count}"))
        self.writer.process(messages)

    def projector(self, **kw: Any) -> Projector:
        app = ProviderLifecycle(env=sqlite_env(str(self.path)))
        projector = Projector(app, ViewDatabase(self.url), **kw)
        self._projectors.append(projector)
        return projector

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path) as conn:
            return conn.execute(statement, params).fetchall()

    def close(self) -> None:
        for p in self._projectors:
            p.close()
            p.app.close()
        self.read_model.close()
        self.writer.close()
        self.reader.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


# --- equal to a replay ------------------------------------------------------------------

demo_streams = st.builds(
    lambda seed, n: list(generate(providers=n, seed=seed)),
    st.integers(0, 100_000),
    st.integers(1, 25),
)


@given(
    st.one_of(streams(), demo_streams),
    st.lists(st.integers(0, 400), max_size=4),
    st.integers(1, 9),
    st.sampled_from([0, 2, 100_000]),
)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_views_equal_a_fresh_replay_after_a_random_stream_and_after_a_rebuild(
    raws: list[bytes], cuts: list[int], batch: int, cache: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = Store(Path(tmp) / "store.db")
        try:
            # Ingest in chunks; project a few small batches after each (a tiny cache
            # forces loads from the repository at the event's version).
            projector = s.projector(batch_size=batch, cache_size=cache)
            bounds = sorted({c % (len(raws) + 1) for c in cuts} | {0, len(raws)})
            for a, b in itertools.pairwise(bounds):
                s.ingest(*raws[a:b])
                projector.step()
                projector.step()
            projector.catch_up()
            assert projector.position == s.reader.process_recorder.max_notification_id()
            assert_views_equal_replay(s.writer, s.read_model, DATES)

            before = s.read_model.generation
            report = rebuild(s.reader, ViewDatabase(s.url), batch_size=batch * 7)
            assert report.generation == s.read_model.generation == before + 1
            assert_views_equal_replay(s.writer, s.read_model, DATES)
            # The incrementally built generation equals a from-scratch rebuild, row by row.
            assert verify(s.reader, ViewDatabase(s.url)).ok
        finally:
            s.close()


def test_a_demo_stream_projects_to_a_replay_with_every_outcome(store: Store) -> None:
    store.ingest(*generate(providers=120, seed=4))
    store.projector(batch_size=50).catch_up()
    stats = store.read_model.stats()
    assert all(stats["outcomes"][k] > 0 for k in ("accepted", "refused", "malformed"))
    assert_views_equal_replay(store.writer, store.read_model, DATES)


# --- exactly once ------------------------------------------------------------------------


def test_a_failed_batch_leaves_no_partial_rows_and_is_applied_once_on_retry(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = uscc(1), uscc(2)
    store.ingest(*onboard(a), *onboard(b))
    projector = store.projector(batch_size=100)
    assert projector.catch_up() == 12  # 6 events and their idempotency-key markers
    g = store.read_model.generation
    before = store.sql(f"SELECT * FROM {table_name(g, 'provider')} ORDER BY uscc")
    store.ingest(violation(a, "2026-02-01"), deposit_deducted(b, "2026-02-02", 5))
    store.ingest(applied(a, "2026-02-03"))  # refused: a tenure is open

    def fail(self: Any, generation: int, changes: Any) -> None:
        raise RuntimeError("the database went away mid-batch")

    # The inbox is written after the provider rows, stats and positions of the batch.
    monkeypatch.setattr(projector_module.ViewWriter, "_inbox", fail)
    with pytest.raises(RuntimeError, match="mid-batch"):
        projector.step()
    assert store.sql(f"SELECT * FROM {table_name(g, 'provider')} ORDER BY uscc") == before
    assert store.sql(f"SELECT SUM(n) FROM {table_name(g, 'outcomes')}") == [(6,)]
    assert {v.position for v in store.read_model.status()} == {12}

    monkeypatch.undo()
    # The aggregates the failed batch advanced in memory must not be reused as they are.
    # (2 events, the refusal's record and the markers of the 3 idempotency keys judged)
    assert projector.catch_up() == 6
    assert store.read_model.stats()["outcomes"] == store.writer.stats()
    assert_views_equal_replay(store.writer, store.read_model, DATES)


def test_two_projectors_on_one_generation_apply_each_batch_once(store: Store) -> None:
    a = uscc(3)
    store.ingest(*onboard(a))
    first, second = store.projector(batch_size=2), store.projector(batch_size=2)
    assert first.position == second.position == 0
    assert first.step() == 2
    # ``second`` still believes the views are at 0: its batch is refused, not re-applied.
    with pytest.raises(PositionConflict):
        second.step()
    assert second.catch_up() == 4  # 3 events and 3 idempotency-key markers in all
    assert first.catch_up() == 0
    store.ingest(violation(a, "2026-02-01"), exited(a, "2026-03-01"))
    assert second.catch_up() + first.catch_up() == 4
    assert store.read_model.stats()["outcomes"]["accepted"] == 5
    assert_views_equal_replay(store.writer, store.read_model, DATES)


async def test_run_follows_the_store_until_stopped(store: Store) -> None:
    projector = store.projector(batch_size=10, idle_seconds=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    store.ingest(*onboard(uscc(4)))

    async def caught_up() -> None:
        while store.read_model.provider(uscc(4)) is None:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(caught_up(), timeout=10)
    doc = store.read_model.provider(uscc(4))
    assert doc is not None and doc["status"] == "active"
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert task.done() and task.exception() is None


# --- time travel ---------------------------------------------------------------------------


def test_time_travel_applies_the_events_up_to_the_date_and_judges_eligibility_then(
    store: Store,
) -> None:
    a = uscc(5)
    store.ingest(*onboard(a, "2025-01-01"), violation(a, "2025-02-01", "A2.2-4"))
    store.ingest(exited(a, "2025-06-01"))
    store.ingest(applied(a, "2025-07-01"))  # refused: A1.3-5 until 2025-11-28
    store.ingest(applied(a, "2025-12-01"))
    store.projector().catch_up()
    rm = store.read_model

    # 1.1: before its first event the provider has records, so a document, with no status.
    before = rm.provider(a, as_of=date(2024, 12, 31))
    assert before is not None
    assert (before["status"], before["deposit_balance_fen"], before["violations"]) == (None, 0, 0)
    assert before["eligibility"]["can_apply"] is True and before["timeline"] == []

    day2 = rm.provider(a, as_of=date(2025, 1, 2))
    assert day2 is not None
    assert (day2["status"], day2["deposit_balance_fen"], day2["deposit_shortfall_fen"]) == (
        "admitted",
        0,
        10_000_000,
    )
    assert day2["eligibility"]["clause"] == "STATE"
    assert [(r["clause"], r["who"]) for r in day2["requirements"]] == [("A1.1.1-3", "provider")]
    assert [t["type"] for t in day2["timeline"]] == ["provider.Applied", "provider.Admitted"]

    exit_day = rm.provider(a, as_of=date(2025, 6, 1))
    assert exit_day is not None
    assert exit_day["status"] == "exited" and exit_day["violations"] == 1
    assert exit_day["eligibility"] == {
        "can_apply": False,
        "from": "2025-11-28",
        "permanent": False,
        "clause": "A1.3-5",
        "requires": None,
        "reason": "may not apply before 2025-11-28 (A1.3-5, exit on 2025-06-01)",
    }
    assert exit_day["requirements"] == [
        {
            "clause": "A1.3-5",
            "reason": "cooldown (A1.3-5): may apply again from 2025-11-28",
            "who": "provider",
            "by": "2025-11-28",
        }
    ]
    assert [t["outcome"] for t in exit_day["timeline"]] == ["accepted"] * 5

    july = rm.provider(a, as_of=date(2025, 7, 1))
    assert july is not None
    assert [t["outcome"] for t in july["timeline"]][-1] == "refused"
    assert july["timeline"][-1]["codes"] == ["A1.3-5"]

    cooled = rm.provider(a, as_of=date(2025, 11, 28))
    assert cooled is not None
    assert cooled["eligibility"]["can_apply"] is True and cooled["requirements"] == []

    now = rm.provider(a)
    assert now is not None and now["status"] == "applied"
    assert [t.get("sequence") for t in now["timeline"]] == [1, 2, 3, 4, 5, None, 6]

    # can_apply is filtered in SQL for any date, exactly as the domain judges it then.
    def can(day: date) -> set[str]:
        page = rm.providers(ProviderFilter(can_apply=True, as_of=day), limit=ALL)
        return {i["uscc"] for i in page.items}

    assert can(date(2024, 12, 31)) == {a}  # never applied, then
    assert can(date(2025, 7, 1)) == set()
    assert can(date(2025, 11, 28)) == {a}
    assert can(date(2025, 12, 1)) == set()
    cannot = rm.providers(ProviderFilter(can_apply=False, as_of=date(2025, 7, 1)), limit=ALL)
    assert [i["uscc"] for i in cannot.items] == [a]
    assert cannot.items[0]["eligibility"]["from"] == "2025-11-28"


def test_a_uscc_with_only_refused_records_has_a_document_with_no_status(store: Store) -> None:
    only_refused, nothing = uscc(7), uscc(8)
    store.ingest(admitted(only_refused, "2025-03-01"), deposit_paid(only_refused, "2025-03-02"))
    store.ingest(*onboard(uscc(9), "2025-01-01"))
    store.projector().catch_up()
    rm = store.read_model
    for as_of in (None, date(2025, 3, 1), date(2024, 1, 1), date(9999, 12, 31)):
        doc = rm.provider(only_refused, as_of=as_of)
        assert doc is not None, as_of
        assert doc["uscc"] == only_refused
        assert (doc["status"], doc["deposit_balance_fen"], doc["violations"]) == (None, 0, 0)
        assert doc["eligibility"] == {
            "can_apply": True,
            "from": None,
            "permanent": False,
            "clause": None,
            "requires": None,
            "reason": "never applied",
        }
        assert doc["requirements"] == []
    now = rm.provider(only_refused)
    assert now is not None
    assert [(t["outcome"], t["codes"]) for t in now["timeline"]] == [("refused", ["STATE"])] * 2
    assert rm.provider(nothing) is None  # 404: nothing at all was recorded for it
    assert rm.provider(nothing, as_of=date(2025, 3, 1)) is None


def test_the_list_filters_answer_every_date_up_to_9999_12_31(store: Store) -> None:
    active, exited_, banned = uscc(11), uscc(12), uscc(13)
    store.ingest(*onboard(active, "2025-01-01"), *onboard(exited_, "2025-01-01"))
    store.ingest(*onboard(banned, "2025-01-01"))
    store.ingest(exited(exited_, "2025-06-01"), expelled(banned, "2025-06-01", "A1.2.2-3"))
    store.projector().catch_up()
    rm = store.read_model
    for day in (date(1, 1, 1), date(2025, 6, 1), date(2025, 11, 28), date(9999, 12, 30), date.max):
        can = {i["uscc"] for i in rm.providers(ProviderFilter(can_apply=True, as_of=day)).items}
        cannot = {i["uscc"] for i in rm.providers(ProviderFilter(can_apply=False, as_of=day)).items}
        assert can | cannot == {active, exited_, banned}, day  # every provider, every day
        for u in (active, exited_, banned):
            page = rm.provider(u, as_of=day)
            assert page is not None
            assert page["eligibility"]["can_apply"] is (u in can), (u, day)
    assert {
        i["uscc"] for i in rm.providers(ProviderFilter(can_apply=True, as_of=date.max)).items
    } == {exited_}


def test_the_segments_answer_the_first_and_the_last_day_too() -> None:
    from lifecycle.eligibility import Milestone, eligibility
    from projections.documents import eligibility_segments

    history = [
        Milestone(date(2025, 1, 1), "applied"),
        Milestone(date(2025, 6, 1), "exited"),
        Milestone(date(2025, 12, 1), "applied"),
        Milestone(date(2026, 1, 1), "expelled", ground="A1.2.2-3"),  # permanent
    ]
    segments = eligibility_segments(history)
    for day in (date.min, date(2025, 6, 1), date(2025, 11, 28), date(9999, 12, 30), date.max):
        [segment] = [s for s in segments if s.covers(day)]
        verdict = eligibility(history, day)
        assert (segment.can_apply, segment.clause) == (verdict.can_apply, verdict.clause), day


def test_evaluate_and_the_read_model_answer_alike_as_of_any_date(store: Store) -> None:
    from lifecycle.evaluate import evaluate

    a, b, c = uscc(21), uscc(22), uscc(23)
    records = [
        *onboard(a, "2025-01-01"),
        violation(a, "2025-02-01"),
        deposit_deducted(a, "2025-03-01", 5),
        expelled(a, "2025-06-01", "A1.2.2-4"),  # manual review
        admitted(b, "2025-01-05"),  # refused: b only ever had refused records
        applied(c, "2025-04-01"),
        exited(c, "2025-04-02"),  # refused: not admitted
        declined(c, "2025-04-03"),
        applied(c, "2026-01-01"),
    ]
    lines = [line(r) for r in records]
    store.ingest(*lines)
    store.projector().catch_up()
    fields = ("status", "deposit_balance_fen", "violations", "eligibility")
    for day in (
        date(2024, 12, 31),
        date(2025, 1, 2),
        date(2025, 2, 1),
        date(2025, 3, 1),
        date(2025, 4, 2),
        date(2025, 6, 1),
        date(2026, 1, 1),
        date.max,
    ):
        offline = evaluate([raw + b"\n" for raw in lines], day)["providers"]
        assert set(offline) == {a, b, c}
        for u, expected in offline.items():
            page = store.read_model.provider(u, as_of=day)
            assert page is not None, (u, day)
            assert {k: page[k] for k in fields} == expected, (u, day)


# --- status, lag --------------------------------------------------------------------------


def test_status_shows_each_views_position_the_head_and_the_lag(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.ingest(*onboard(uscc(6)))
    before = store.read_model.status()
    assert {v.name for v in before} == {"provider", "requirements", "stats", "inbox", "timeline"}
    # 3 events and their idempotency-key markers (CONTRACT.md 1.1)
    assert {(v.position, v.head, v.lag) for v in before} == {(0, 6, 6)}

    projector = store.projector(batch_size=2)
    projector.step()
    assert {(v.position, v.lag) for v in store.read_model.status()} == {(2, 4)}
    projector.catch_up()
    store.ingest(violation(uscc(6)), b"{not json")
    assert {(v.position, v.head, v.lag) for v in store.read_model.status()} == {(6, 9, 3)}

    monkeypatch.setenv("LIFECYCLE_STORE", store.url)
    result = CliRunner().invoke(projections_app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["head"] == 9 and report["live_generation"] == 1
    assert {(v["view"], v["position"], v["lag"]) for v in report["views"]} == {
        (name, 6, 3) for name in ("provider", "requirements", "stats", "inbox", "timeline")
    }
    table = CliRunner().invoke(projections_app, ["status"])
    assert table.exit_code == 0 and "timeline" in table.output and "lag" in table.output


# --- rebuild and verify -------------------------------------------------------------------


def test_rebuild_keeps_readers_answering_and_switches_them_over(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    subjects = [uscc(100 + i) for i in range(12)]
    for s in subjects:
        store.ingest(*onboard(s, "2025-03-01"))
    live = store.projector(batch_size=7)
    live.catch_up()
    rm = store.read_model
    old_generation = rm.generation
    expected = {s: rm.provider(s) for s in subjects}

    # A reader thread reads all through the rebuild; every answer must be whole.
    done = threading.Event()
    read_during_rebuild = threading.Event()
    rebuilding = threading.Event()
    errors: list[BaseException] = []
    generations_seen: set[int] = set()

    def reader() -> None:
        try:
            while not done.is_set():
                for s in subjects:
                    generations_seen.add(rm.generation)
                    assert rm.provider(s) == expected[s]
                if rebuilding.is_set():
                    read_during_rebuild.set()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            read_during_rebuild.set()

    positions_seen: list[tuple[int, int]] = []

    def progress(position: int, head: int) -> None:
        rebuilding.set()
        assert read_during_rebuild.wait(10), "the reader never read during the rebuild"
        # Until the switch, readers use the old generation.
        assert rm.generation == old_generation
        positions_seen.append((position, head))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        report = rebuild(store.reader, ViewDatabase(store.url), batch_size=5, progress=progress)
    finally:
        done.set()
        thread.join(10)
    assert not errors, errors
    assert report.generation == old_generation + 1 == rm.generation
    assert generations_seen >= {old_generation}
    # 36 events and their idempotency-key markers
    assert positions_seen[-1] == (72, 72) and len(positions_seen) >= 7
    assert {s: rm.provider(s) for s in subjects} == expected

    # The live projector continues on the new generation; the old one stays frozen.
    store.ingest(exited(subjects[0], "2026-01-10"))
    assert live.catch_up() == 2  # the event and its key's marker
    assert live.generation == report.generation
    doc = rm.provider(subjects[0])
    assert doc is not None and doc["status"] == "exited"
    old = store.sql(
        "SELECT position FROM view_tracking WHERE generation=? AND view='provider'",
        (old_generation,),
    )
    assert old == [(72,)]
    assert_views_equal_replay(store.writer, rm, DATES)

    # The rebuild command: a progress bar, then the switch; only one older generation kept.
    monkeypatch.setenv("LIFECYCLE_STORE", store.url)
    result = CliRunner().invoke(projections_app, ["rebuild", "--batch-size", "10"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "events/s" in output
    assert f"readers switched from generation {report.generation}" in output
    assert rm.generation == report.generation + 1
    kept = store.sql("SELECT generation, state FROM view_generations ORDER BY generation")
    assert kept == [(report.generation, "retired"), (report.generation + 1, "live")]
    tables = {r[0] for r in store.sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert table_name(old_generation, "provider") not in tables


def test_verify_is_clean_then_names_every_changed_missing_or_extra_row(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = uscc(7), uscc(8)
    store.ingest(*onboard(a), *onboard(b), applied(a, "2026-02-01"), b"[]")
    store.projector(batch_size=3).catch_up()
    monkeypatch.setenv("LIFECYCLE_STORE", store.url)
    runner = CliRunner()

    clean = runner.invoke(projections_app, ["verify"])
    assert clean.exit_code == 0, clean.output
    assert "ok" in clean.output

    g = store.read_model.generation
    store.sql(
        f"UPDATE {table_name(g, 'provider')} SET deposit_balance_fen = 1 WHERE uscc = ?", (a,)
    )
    store.sql(f"DELETE FROM {table_name(g, 'timeline')} WHERE uscc = ? AND nid = 1", (a,))
    store.sql(f"UPDATE {table_name(g, 'outcomes')} SET n = n + 1 WHERE outcome = 'malformed'")

    dirty = runner.invoke(projections_app, ["verify", "--json"])
    assert dirty.exit_code == 1, dirty.output
    report = json.loads(dirty.stdout)
    assert report["ok"] is False
    found = {(d["table"], d["kind"], tuple(d["key"].values())) for d in report["differences"]}
    assert found == {
        ("provider", "changed", (a,)),
        ("timeline", "missing", (a, 1)),
        ("outcomes", "changed", ("malformed",)),
    }
    [provider] = [d for d in report["differences"] if d["table"] == "provider"]
    assert provider["columns"] == {"deposit_balance_fen": {"live": 1, "rebuilt": 10_000_000}}

    table = runner.invoke(projections_app, ["verify"])
    assert table.exit_code == 1
    output = " ".join(table.output.split())
    assert "3 differences between generation 1 and a rebuild" in output
    assert "changed" in output and "missing" in output

    # An extra row the history does not explain is found too; scratch tables are gone.
    store.sql(
        f"INSERT INTO {table_name(g, 'counts')} (city, status, n) VALUES ('nowhere', 'active', 1)"
    )
    again = verify(store.reader, ViewDatabase(store.url))
    assert ("counts", "extra") in {(d.table, d.kind) for d in again.differences}
    assert store.sql("SELECT generation FROM view_generations") == [(g,)]


# --- reading: filters, inbox, requirements --------------------------------------------------


def test_provider_list_filters_sorts_and_pages(store: Store) -> None:
    names = {1: "杭州甲", 2: "杭州乙", 3: "宁波丙", 4: "杭州丁"}
    for n, name in names.items():
        city = "宁波" if n == 3 else "杭州"
        store.ingest(
            applied(
                uscc(200 + n),
                f"2025-0{n}-01",
                company_name=f"{name}直播服务有限公司",
                entity_city=city,
                service_city=city,
            )
        )
    store.ingest(
        admitted(uscc(201), "2025-05-01"),
        deposit_paid(uscc(201), "2025-05-02"),
        declined(uscc(202), "2025-05-03"),
    )
    store.projector().catch_up()
    rm = store.read_model

    def usccs(**kw: Any) -> list[str]:
        sort = kw.pop("sort", "uscc")
        return [i["uscc"] for i in rm.providers(ProviderFilter(**kw), limit=ALL, sort=sort).items]

    assert usccs(status="active") == [uscc(201)]
    assert usccs(status="applied") == [uscc(203), uscc(204)]
    assert usccs(city="宁波") == [uscc(203)]
    assert usccs(q="杭州") == [uscc(201), uscc(202), uscc(204)]
    assert usccs(q=uscc(204)[-6:].lower()) == [uscc(204)]
    assert usccs(q="%") == []
    assert usccs(sort="-updated_at") == [uscc(202), uscc(201), uscc(204), uscc(203)]
    assert usccs(sort="city")[0] == uscc(203) or usccs(sort="city")[-1] == uscc(203)
    assert usccs(can_apply=True, as_of=date(2025, 6, 1)) == [uscc(202)]

    page = rm.providers(ProviderFilter(), offset=1, limit=2)
    assert (page.total, page.offset, page.limit) == (4, 1, 2)
    assert [i["uscc"] for i in page.items] == [uscc(202), uscc(203)]
    assert "timeline" not in page.items[0]
    with pytest.raises(ValueError):
        rm.providers(ProviderFilter(), sort="nonsense")  # type: ignore[arg-type]


def test_inbox_lists_refused_and_malformed_records_filterable_with_resubmissions(
    store: Store,
) -> None:
    a = uscc(9)
    store.ingest(*onboard(a, "2025-01-01"), exited(a, "2025-06-01"))
    store.ingest(applied(a, "2025-07-01"), b"{broken", admitted(uscc(10), "2025-07-02"))
    projector = store.projector()
    projector.catch_up()
    rm = store.read_model

    everything = rm.inbox(InboxFilter())
    assert [i["outcome"] for i in everything.items] == ["refused", "malformed", "refused"]
    assert everything.items[0]["subject"] == uscc(10)
    assert rm.inbox(InboxFilter(code="A1.3-5")).items[0]["subject"] == a
    assert rm.inbox(InboxFilter(code="A1.3")).total == 0  # whole codes only
    assert rm.inbox(InboxFilter(outcome="malformed")).items[0]["reason"].startswith("invalid_json")
    assert rm.inbox(InboxFilter(subject=a, type="provider.Applied")).total == 1
    assert rm.inbox(InboxFilter(type="provider.Admitted")).items[0]["codes"] == ["STATE"]
    assert rm.inbox(InboxFilter(), offset=2, limit=5).items[0]["outcome"] == "refused"

    refused = rm.inbox(InboxFilter(code="A1.3-5")).items[0]
    from uuid import UUID

    record = store.writer.record(UUID(refused["record"]))
    record.resubmit("ops", NOW)
    record.resubmit("ops", NOW)
    store.writer.save(record)
    projector.catch_up()
    assert rm.inbox(InboxFilter(code="A1.3-5")).items[0]["resubmissions"] == 2
    assert_views_equal_replay(store.writer, rm, DATES)


def test_requirements_say_what_is_unmet_who_must_act_and_by_when(store: Store) -> None:
    cases = {
        "store account": [applied(uscc(301), "2026-01-01", is_store_account=True)],
        "waiting": [applied(uscc(302), "2026-01-01")],
        "short": [
            *onboard(uscc(303), "2026-01-01"),
            deposit_deducted(uscc(303), "2026-02-01", 2_000_000),
        ],
        "cooldown": [*onboard(uscc(304), "2026-01-01"), exited(uscc(304), "2026-03-01")],
        "review": [*onboard(uscc(305), "2026-01-01"), expelled(uscc(305), "2026-03-01", "A3-2")],
        "banned": [
            *onboard(uscc(306), "2026-01-01"),
            expelled(uscc(306), "2026-03-01", "A1.2.2-4", readmission=PERMANENT),
        ],
        "requalify": [
            *onboard(uscc(307), "2026-01-01"),
            expelled(uscc(307), "2026-03-01", "A1.2.2-1"),
        ],
        "until": [
            *onboard(uscc(308), "2026-01-01"),
            expelled(uscc(308), "2026-03-01", "A1.2.2-4", readmission=until("2027-01-01")),
        ],
        "active": onboard(uscc(309), "2026-01-01"),
    }
    for events in cases.values():
        store.ingest(*events)
    store.projector().catch_up()
    rm = store.read_model

    def reqs(n: int) -> list[tuple[str, str, str | None]]:
        doc = rm.provider(uscc(n))
        assert doc is not None
        return [(r["clause"], r["who"], r["by"]) for r in doc["requirements"]]

    assert reqs(301) == [("A1.1.1-4", "provider", None)]
    assert reqs(302) == [("A1.1", "platform", None)]
    assert reqs(303) == [("A1.1.1-3", "provider", None)]
    assert reqs(304) == [("A1.3-5", "provider", "2026-08-28")]
    assert reqs(305) == [("A1.4", "platform", None)]  # 1.1: manual review is A1.4
    assert reqs(306) == [("A1.3-1", "platform", None)]
    assert reqs(307) == [("A1.3-2", "provider", None)]
    assert reqs(308) == [("A1.3-1", "provider", "2027-01-01")]
    assert reqs(309) == []
    doc = rm.provider(uscc(301))
    assert doc is not None and doc["unmet"][0]["clause"] == "A1.1.1-4"

    platform = rm.requirements(who="platform")
    assert [(i["uscc"], i["clause"]) for i in platform.items] == [
        (uscc(302), "A1.1"),
        (uscc(305), "A1.4"),
        (uscc(306), "A1.3-1"),
    ]
    dated = rm.requirements(who="provider", as_of=date(2026, 6, 30))
    assert [i["by"] for i in dated.items][:2] == ["2026-08-28", "2027-01-01"]
    later = rm.requirements(who="provider", as_of=date(2026, 9, 1))
    assert "2026-08-28" not in [i["by"] for i in later.items]
    assert rm.requirements(clause="A1.3-2").items[0]["uscc"] == uscc(307)


def test_stats_count_by_status_city_day_and_outcome(store: Store) -> None:
    store.ingest(
        *onboard(uscc(401), "2025-01-01"),
        *onboard(uscc(402), "2025-01-01"),
        exited(uscc(402), "2025-02-01"),
        applied(uscc(403), "2025-01-01", entity_city="宁波", service_city="宁波"),
        expelled(uscc(401), "2025-02-01", "A1.2.2-2"),
        b"nope",
    )
    store.projector(batch_size=2).catch_up()
    stats = store.read_model.stats()
    assert stats["by_status"] == {"applied": 1, "exited": 1, "expelled": 1}
    assert stats["by_city"] == {"宁波": 1, "杭州": 2}
    assert stats["by_city_status"]["杭州"] == {"exited": 1, "expelled": 1}
    by_day = {d["day"]: d for d in stats["per_day"]}
    assert by_day["2025-01-01"]["applied"] == 3
    assert by_day["2025-01-02"]["admitted"] == 2
    assert (by_day["2025-02-01"]["exited"], by_day["2025-02-01"]["expelled"]) == (1, 1)
    assert stats["outcomes"] == {
        "consumed": 10,
        "accepted": 9,
        "refused": 0,
        "malformed": 1,
        "duplicate": 0,
    }


def test_ping_and_a_store_that_cannot_hold_views(store: Store) -> None:
    store.read_model.ping()
    with pytest.raises(ValueError, match="SQLite file or PostgreSQL"):
        ViewDatabase("memory://")
