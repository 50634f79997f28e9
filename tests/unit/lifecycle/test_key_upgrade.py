"""A store written by the contract 1.0 code keeps working under 1.1's idempotency key.

``tests/fixtures/keys_1_0_store.db`` was written by the 1.0 code (its table is in
``tests/fixtures/make_keys_1_0_store.py``): ids collide across providers and sources. Before
its first 1.1 batch the service writes, once, an ``EventKey`` marker for every (source, id)
it accepted or refused (``ProviderLifecycle.index_event_keys``); no stored event is
rewritten, so the hash chain and the frozen seal still verify.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from audit.verify import read_seals, verify
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.ports import Position
from lifecycle.records import EVENT_KEYS_INDEXED, EventKey, event_key, record_id
from store.audit_port import AuditStore
from tests.factories import DEPOSIT_FEN, SOURCE, admitted, deposit_paid, line, uscc

FIXTURES = Path(__file__).parents[2] / "fixtures"
P, Q, R = uscc(711), uscc(712), uscc(713)
S2 = "/taobao-live/risk-control"
MARKER = get_topic(EventKey.Noted)
#: The keys the 1.0 store judged: accepted (for some provider), or only refused.
ACCEPTED = {"shared-1", "p-adm", "pay-1", "r-app", "r-early"}
REFUSED_ONLY = {"q-exit"}


def inbound() -> list[tuple[bytes, bool]]:
    """What the 1.0 store consumed: (the record, re-submitted by an operator)."""
    entries = [
        json.loads(raw) for raw in (FIXTURES / "keys_1_0_inbound.jsonl").read_text().splitlines()
    ]
    return [(e["raw"].encode(), e["resubmitted"]) for e in entries]


def rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "ORDER BY rowid"
        ).fetchall()
    finally:
        conn.close()


def links(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM stored_events_chain ORDER BY 3").fetchall()
    finally:
        conn.close()


def markers(path: Path) -> dict[str, dict[str, Any]]:
    """The EventKey markers stored, by CloudEvents id (every key here has source S1)."""
    found = {}
    for _, _, _, topic, state in rows(path):
        if topic == MARKER:
            value = json.loads(state)
            found[value["ce_id"]] = value
    return found


def open_store(path: Path) -> ProviderLifecycle:
    return ProviderLifecycle(
        env={"PERSISTENCE_MODULE": "store.sqlite:Factory", "SQLITE_DBNAME": str(path)}
    )


@pytest.fixture
def old_store(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store.db"
    shutil.copy(FIXTURES / "keys_1_0_store.db", path)
    yield path


def consume(
    app: ProviderLifecycle, *records: dict[str, Any] | bytes | tuple[bytes, bool]
) -> list[str]:
    """One Kafka batch continuing the fixture's partition; the outcomes."""
    stored = app.position("kafka:fixture.keys:0")
    assert stored is not None
    messages = []
    for offset, r in enumerate(records, start=stored + 1):
        raw, again = r if isinstance(r, tuple) else (line(r), False)
        messages.append(InboundMessage(raw, f"kafka:fixture.keys:0:{offset}", resubmitted=again))
    positions = [Position("kafka:fixture.keys:0", stored + 1, stored + len(records))]
    return [r.outcome for r in app.process(messages, positions if records else [])]


def audit_store(app: ProviderLifecycle) -> AuditStore:
    recorder = app.recorder
    assert isinstance(recorder, AuditStore)
    return recorder


# --- the fixture is what the 1.0 code wrote ---------------------------------------------------


def test_the_fixture_was_written_by_the_1_0_code(old_store: Path) -> None:
    topics = [r[3] for r in rows(old_store)]
    assert MARKER not in topics  # no 1.1 key markers
    assert topics.count("lifecycle.records:RefusedId.Noted") == 3  # 1.0's refused-id markers
    app = open_store(old_store)
    try:
        assert app.stats() == {
            "consumed": 14,
            "accepted": 6,
            "refused": 3,
            "malformed": 2,
            "duplicate": 3,
        }
        assert app.position(EVENT_KEYS_INDEXED) is None
    finally:
        app.close()


def test_reading_an_old_store_writes_nothing(old_store: Path) -> None:
    app = open_store(old_store)
    try:
        report = verify(audit_store(app), exported=read_seals(FIXTURES / "keys_1_0_seals.jsonl"))
        assert report.ok and report.checked == 17 and report.seals == 1, report.as_dict()
        assert app.provider(P) is not None
    finally:
        app.close()
    assert rows(old_store) == rows(FIXTURES / "keys_1_0_store.db")


# --- the upgrade --------------------------------------------------------------------------


def test_the_first_batch_indexes_every_old_key_once_and_rewrites_nothing(old_store: Path) -> None:
    app = open_store(old_store)
    try:
        assert consume(app) == []  # even an empty batch: the index comes first
        found = markers(old_store)
        assert set(found) == ACCEPTED | REFUSED_ONLY
        assert {k for k, m in found.items() if m["outcome"] == "accepted"} == ACCEPTED
        assert all(m["source"] == SOURCE for m in found.values())
        assert found["shared-1"]["judged_for"] == P  # the first to be accepted
        assert found["q-exit"]["judged_for"] == Q
        assert app.position(EVENT_KEYS_INDEXED) == 17
        # the old rows and their links are as they were; the markers come after them
        assert rows(old_store)[:17] == rows(FIXTURES / "keys_1_0_store.db")
        assert links(old_store)[:17] == links(FIXTURES / "keys_1_0_store.db")
        report = verify(audit_store(app), exported=read_seals(FIXTURES / "keys_1_0_seals.jsonl"))
        assert report.ok and report.checked == 17 + 6 and report.seals == 1, report.as_dict()
    finally:
        app.close()
    again = open_store(old_store)
    try:
        assert again.index_event_keys() == 0  # done once: noted in the tracking table
        assert again._backfill_keys(page=3)[1] == 0  # and idempotent even if run again
        assert consume(again) == []
        assert len(markers(old_store)) == 6
    finally:
        again.close()


def test_after_the_upgrade_old_events_count_under_the_new_key(old_store: Path) -> None:
    records = inbound()
    app = open_store(old_store)
    try:
        assert consume(
            app,
            records[0],  # (S1, shared-1) accepted for P: a duplicate
            deposit_paid(R, "2025-02-01", id="shared-1"),  # the same key, another provider
            records[2],  # (S1, r-early): refused, then accepted on re-submission
            (records[2][0], True),  # its re-submission now: the key was accepted
            records[7],  # (S1, q-exit), refused: a duplicate …
            (records[7][0], True),  # … until re-submitted: judged again (still STATE)
            (records[13][0], True),  # (S1, p-adm): P's accepted key; refused for R in 1.0
            records[6],  # (S2, pay-1): a 1.0 duplicate (same id, another source): judged now
            records[3],  # (S2, r-early) for P: a 1.0 duplicate; judged now (P is admitted)
            admitted(Q, "2025-02-01", id="m-1"),  # the id of a malformed record: reserved nothing
            {**deposit_paid(R, "2025-02-02", id="shared-1"), "source": S2},  # another source
        ) == [
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate",
            "refused",
            "duplicate",
            "accepted",
            "refused",
            "accepted",
            "accepted",
        ]
        p, q, r = app.provider(P), app.provider(Q), app.provider(R)
        assert p is not None and (p.status, p.deposit_balance_fen) == ("active", DEPOSIT_FEN)
        assert q is not None and q.status == "admitted"
        assert r is not None and r.deposit_balance_fen == DEPOSIT_FEN
        assert app.stats()["consumed"] == 14 + 11
        report = verify(audit_store(app), exported=read_seals(FIXTURES / "keys_1_0_seals.jsonl"))
        assert report.ok and report.seals == 1, report.as_dict()
        assert rows(old_store)[:17] == rows(FIXTURES / "keys_1_0_store.db")
    finally:
        app.close()


def test_an_interrupted_index_is_completed_by_the_next_start(
    old_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_store(old_store)
    recorder = app.process_recorder
    insert = recorder.insert_events
    calls: list[int] = []

    def crash_after_the_first_page(events: Any, **kwargs: Any) -> Any:
        calls.append(len(events))
        if len(calls) > 1:
            raise OSError("the process was killed")
        return insert(events, **kwargs)

    monkeypatch.setattr(recorder, "insert_events", crash_after_the_first_page)
    with pytest.raises(OSError):
        app.index_event_keys(page=4)
    app.close()
    assert 0 < len(markers(old_store)) < 6
    restarted = open_store(old_store)
    try:
        assert restarted.position(EVENT_KEYS_INDEXED) is None
        assert consume(restarted, inbound()[0]) == ["duplicate"]
        assert set(markers(old_store)) == ACCEPTED | REFUSED_ONLY
    finally:
        restarted.close()


def test_two_processes_starting_at_once_index_the_keys_once(old_store: Path) -> None:
    one, other = open_store(old_store), open_store(old_store)
    try:
        present = other._present
        interleaved: list[bool] = []

        def meanwhile(ids: Any) -> set[Any]:
            found = present(ids)
            if not interleaved:  # ``one`` does it all after ``other`` looked, before it writes
                interleaved.append(True)
                assert one.index_event_keys(page=4) == 6
            return found

        other._present = meanwhile  # type: ignore[method-assign]
        assert other.index_event_keys(page=4) == 0  # refused by the store, then found done
        other._present = present  # type: ignore[method-assign]
        assert interleaved
        assert len(markers(old_store)) == 6
        assert consume(other, inbound()[0]) == ["duplicate"]
        assert consume(one, inbound()[7]) == ["duplicate"]
    finally:
        one.close()
        other.close()


def test_a_second_writer_of_a_marker_is_refused_by_the_store(old_store: Path) -> None:
    # What makes the interleaving above safe: a marker's id is its key.
    app = open_store(old_store)
    try:
        consume(app)
        duplicate = EventKey(SOURCE, "q-exit", "refused", Q)
        assert duplicate.id == event_key(SOURCE, "q-exit")
        with pytest.raises(IntegrityError):
            app.save(duplicate)
    finally:
        app.close()


# --- the v1 fixture: refusals with no 1.0 marker at all -------------------------------------


def test_refusals_of_a_store_older_than_the_refused_id_markers_count_too(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    shutil.copy(FIXTURES / "v1_store.db", path)
    lines = (FIXTURES / "v1_inbound.jsonl").read_bytes().splitlines()
    early = next(raw for raw in lines if b'"a-app-early"' in raw)  # refused A1.3-5 in 2024
    app = open_store(path)
    try:
        first = (app.position("kafka:fixture.inbound:0") or 0) + 1
        results = app.process(
            [InboundMessage(early, f"kafka:fixture.inbound:0:{first}")],
            [Position("kafka:fixture.inbound:0", first, first)],
        )
        assert [r.outcome for r in results] == ["duplicate"]
        assert app.record(record_id(f"kafka:fixture.inbound:0:{first}")).outcome == "duplicate"
        assert verify(audit_store(app), exported=read_seals(FIXTURES / "v1_seals.jsonl")).ok
    finally:
        app.close()
