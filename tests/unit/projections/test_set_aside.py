"""Whatever the store accepted, the projector projects (ISSUE 9, deliverable 2): values a view
column cannot hold are written as it can, a notification that still cannot be projected is
set aside (log, metric, ``projections status``) while the batch and the others go on, and a
transient database error is still retried. Views and chains made by an earlier version are
migrated in place to bounded indexes.

SQLite files here; the same on PostgreSQL in ``tests/integration/test_poison_after_store.py``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from consumers.relay import Relay, RelayConfig
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.provider import Provider
from projections import generations
from projections import projector as projector_module
from projections import writer as writer_module
from projections.database import ViewDatabase
from projections.model import InboxFilter, ProviderFilter
from projections.projector import Projector
from projections.reader import SqlReadModel
from projections.rebuild import rebuild, status_report, verify
from projections.tables import KEY_CHARS, bounded_key, table_name
from projections.writer import storable
from service.cli_projections import projections_app
from store.url import persistence_env
from tests.factories import (
    admitted,
    applied,
    deposit_paid,
    event,
    exited,
    line,
    malformed_before_1_1,
    onboard,
    uscc,
    violation,
)
from tests.oracle import assert_views_equal_replay

NOW = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)
DATES = [date(2026, 1, 1), date(2026, 6, 30), date(2027, 3, 1)]
A, B = uscc(901), uscc(902)


@dataclass
class Store:
    path: Path

    def __post_init__(self) -> None:
        self.url = f"sqlite:///{self.path}"
        self.app = ProviderLifecycle(env=persistence_env(self.url))
        self.read_model = SqlReadModel(ViewDatabase(self.url), self.app, clock=lambda: NOW)
        self.offset = 0
        self.projectors: list[Projector] = []

    def ingest(self, *records: dict[str, Any] | bytes) -> None:
        messages = []
        for r in records:
            self.offset += 1
            messages.append(InboundMessage(line(r), f"kafka:in:0:{self.offset}", key=b"k"))
        self.app.process(messages)

    def projector(self, **kw: Any) -> Projector:
        projector = Projector(self.app, ViewDatabase(self.url), **kw)
        self.projectors.append(projector)
        return projector

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path) as conn:
            return conn.execute(statement, params).fetchall()

    def notification(self, topic_part: str, contains: bytes = b"") -> int:
        """The id of the first stored event of that topic whose state contains ``contains``."""
        for rowid, topic, state in self.sql(
            "SELECT rowid, topic, state FROM stored_events ORDER BY rowid"
        ):
            if topic_part in topic and contains in bytes(state):
                return int(rowid)
        raise LookupError(topic_part)

    def rewrite_state(self, rowid: int, old: bytes, new: bytes) -> None:
        """Change stored bytes, as a store written before the 1.1 JSON rules may hold them
        (the projector reads events, it does not verify the chain)."""
        (state,) = self.sql("SELECT state FROM stored_events WHERE rowid=?", (rowid,))[0]
        assert old in bytes(state)
        with sqlite3.connect(self.path) as conn:
            conn.execute(
                "UPDATE stored_events SET state=? WHERE rowid=?",
                (bytes(state).replace(old, new), rowid),
            )
        self.app.clear_cache()

    def close(self) -> None:
        for p in self.projectors:
            p.close()
        self.read_model.close()
        self.app.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def head(store: Store) -> int:
    return int(store.app.process_recorder.max_notification_id() or 0)


# --- values a column cannot hold ----------------------------------------------------------------


def test_storable_rows_hold_nul_huge_integers_and_long_keys_in_a_form_their_columns_take() -> None:
    long_subject = "S" * 3000
    [row] = storable(
        "timeline",
        [
            (
                long_subject,
                7,
                2**70,
                "id\x00",
                "t",
                None,
                None,
                "r",
                "accepted",
                "[]",
                None,
                "[]",
                "s",
            )
        ],
    )
    assert row[0] == bounded_key(long_subject) and len(row[0]) == KEY_CHARS + 1
    assert row[2] == 2**31 - 1  # an INT column
    assert row[3] == "id\ufffd"
    provider = ("u", "a\x00b", "c", "admitted", 10**20, -(10**20), 1) + (False,) * 5
    [row] = storable("provider", [(*provider, None, 1, None, '{"a":"\\u0000"}')])
    assert row[1] == "a\ufffdb" and row[4] == 2**63 - 1 and row[5] == -(2**63)
    assert row[-1] == '{"a":"\\u0000"}'  # JSON text escapes it: kept as it is
    row = ("accepted", 3)
    assert storable("outcomes", [row])[0] is row  # nothing to change: not copied
    assert bounded_key("x" * KEY_CHARS) == "x" * KEY_CHARS
    assert bounded_key("x" * 300) != bounded_key("x" * 301)


def test_an_old_store_with_nul_and_a_deposit_beyond_bigint_projects_equal_to_a_replay(
    store: Store,
) -> None:
    store.ingest(
        *onboard(A),
        applied(B, company_name="OLD-NAME"),
        deposit_paid(A, "2026-01-05", 12_345),
        violation(A, "2026-01-06"),
    )
    store.rewrite_state(store.notification("Applied", b"OLD-NAME"), b"OLD-NAME", b"a\\u0000b")
    store.rewrite_state(store.notification("DepositPaid", b"12345"), b"12345", str(10**20).encode())
    projector = store.projector(batch_size=100)
    assert projector.catch_up() == head(store)
    assert status_report(store.app, ViewDatabase(store.url))["set_aside_total"] == 0
    assert_views_equal_replay(store.app, store.read_model, DATES)
    doc = store.read_model.provider(A)
    assert doc is not None and doc["deposit_balance_fen"] > 2**63
    g = store.read_model.generation
    assert store.sql(
        f"SELECT deposit_balance_fen FROM {table_name(g, 'provider')} WHERE uscc=?", (A,)
    ) == [(2**63 - 1,)]
    assert store.sql(
        f"SELECT company_name FROM {table_name(g, 'provider')} WHERE uscc=?", (B,)
    ) == [("a\ufffdb",)]
    assert verify(store.app, ViewDatabase(store.url)).ok


def test_long_free_text_is_projected_and_found_through_bounded_indexes(store: Store) -> None:
    name, city, subject = "名" * 4000, "城" * 3000, "S" * 3000
    store.ingest(applied(A, company_name=name, service_city=city, entity_city=city))
    # 1.1 keeps no subject over 64 characters on a malformed record (the application's own
    # bound); a store written before it holds them: the inbox's index must still find one.
    poison = line(event("provider.Applied", subject, {}))  # malformed: not a USCC
    store.app.save(malformed_before_1_1("kafka:in:1:0", subject, raw=poison, key=b"k"))
    store.ingest(event("provider.Applied", "T" * 3000, {}))  # 1.1: kept without its subject
    store.projector().catch_up()
    doc = store.read_model.provider(A)
    assert doc is not None and doc["company_name"] == name and doc["city"] == city
    assert store.read_model.providers(ProviderFilter(city=city)).total == 1
    assert store.read_model.providers(ProviderFilter(city=city[:-1])).total == 0
    assert [
        i["uscc"] for i in store.read_model.providers(ProviderFilter(), sort="company_name").items
    ] == [A]
    [item] = store.read_model.inbox(InboxFilter(subject=subject)).items
    assert item["subject"] == subject
    assert store.read_model.inbox(InboxFilter(subject=subject[:-1])).total == 0
    assert store.read_model.inbox(InboxFilter(subject="T" * 3000)).total == 0
    assert store.read_model.inbox(InboxFilter(outcome="malformed")).total == 2
    assert list(store.read_model.stats()["by_city"]) == [bounded_key(city)]
    g = store.read_model.generation
    plans = " ".join(
        str(r)
        for r in store.sql(
            f"EXPLAIN QUERY PLAN SELECT doc FROM {table_name(g, 'provider')} p "
            "WHERE substr(p.city, 1, 200) = substr(?, 1, 200) AND +p.city = ?",
            (city, city),
        )
    )
    assert "city_prefix_ix" in plans


# --- set aside ------------------------------------------------------------------------------------


def test_a_notification_that_cannot_be_projected_is_set_aside_and_the_others_go_on(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.ingest(*onboard(A), applied(A, "2026-02-01"), *onboard(B), b"{not json")
    refused = store.notification("InboundRecord.Received", b'"refused"')
    store.rewrite_state(refused, b'"outcome"', b'\xff"outcome"')  # no longer JSON
    before = projector_module.PROJECTION_SET_ASIDE.labels("MapperDeserialisationError")._value.get()
    projector = store.projector(batch_size=100)
    with caplog.at_level(logging.ERROR, logger="projections.projector"):
        assert projector.catch_up() == head(store)
    assert projector.position == head(store)

    # Everything else is in the views: both providers, the malformed record.
    for u in (A, B):
        doc = store.read_model.provider(u)
        assert doc is not None and doc["status"] == "active"
    inbox = store.read_model.inbox(InboxFilter())
    assert [i["outcome"] for i in inbox.items] == ["malformed"]
    # Listed, counted and logged (its id and topic, not its content).
    report = status_report(store.app, ViewDatabase(store.url))
    assert report["set_aside_total"] == 1
    [entry] = report["set_aside"]
    assert entry["notification_id"] == refused and entry["generation"] == 1
    assert "InboundRecord.Received" in entry["topic"]
    assert entry["error"].startswith("MapperDeserialisationError")
    after = projector_module.PROJECTION_SET_ASIDE.labels("MapperDeserialisationError")._value.get()
    assert after == before + 1
    [message] = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert f"notification {refused} " in message and "杭州" not in message

    monkeypatch.setenv("LIFECYCLE_STORE", store.url)
    result = CliRunner().invoke(projections_app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [e["notification_id"] for e in listed["set_aside"]] == [refused]
    assert listed["relay"]["set_aside_total"] == 0
    table = CliRunner().invoke(projections_app, ["status"])
    assert table.exit_code == 0 and "Set aside by the projector: 1" in table.output

    # A rebuild meets it again, sets it aside in its own generation, and switches over.
    assert rebuild(store.app, ViewDatabase(store.url)).generation == 2
    again = status_report(store.app, ViewDatabase(store.url))
    assert {(e["generation"], e["notification_id"]) for e in again["set_aside"]} == {
        (1, refused),
        (2, refused),
    }


def test_a_row_the_database_refuses_is_set_aside_with_the_database_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the storable forms, SQLite refuses an integer beyond 64 bits: that
    notification (and the provider's later ones, whose row holds it) is set aside, and the
    other provider's are projected in the same batches."""
    store.ingest(*onboard(A), *onboard(B), deposit_paid(A, "2026-01-05", 12_345))
    store.ingest(violation(B, "2026-01-06"), violation(A, "2026-01-06"))
    deposit = store.notification("DepositPaid", b"12345")
    store.rewrite_state(deposit, b"12345", str(10**20).encode())
    monkeypatch.setattr(writer_module, "storable", lambda table, rows: list(rows))
    projector = store.projector(batch_size=100)
    assert projector.catch_up() == head(store)
    report = status_report(store.app, ViewDatabase(store.url))
    ids = [e["notification_id"] for e in report["set_aside"]]
    assert ids[0] == deposit and len(ids) == 2  # and A's violation after it
    assert all(e["error"].startswith("OverflowError") for e in report["set_aside"])
    doc = store.read_model.provider(B)
    assert doc is not None and doc["violations"] == 1


def test_a_transient_database_error_is_retried_not_set_aside(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.ingest(*onboard(A))
    projector = store.projector()

    def locked(self: Any, generation: int, changes: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(projector_module.ViewWriter, "_inbox", locked)
    with pytest.raises(sqlite3.OperationalError):
        projector.step()
    assert status_report(store.app, ViewDatabase(store.url))["set_aside_total"] == 0
    monkeypatch.undo()
    assert projector.catch_up() == head(store)
    assert status_report(store.app, ViewDatabase(store.url))["set_aside_total"] == 0


# --- migrated in place ----------------------------------------------------------------------------


def _indexes(store: Store) -> set[str]:
    return {name for (name,) in store.sql("SELECT name FROM sqlite_master WHERE type='index'")}


def test_views_and_chain_of_an_earlier_version_get_bounded_indexes_in_place(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.ingest(*onboard(A))
    store.projector().catch_up()
    # As the earlier version left them: whole-text indexes, no set-aside table, no version.
    with sqlite3.connect(store.path) as conn:
        for name in ("pv1_provider_city_prefix_ix", "pv1_provider_company_name_prefix_ix"):
            conn.execute(f"DROP INDEX {name}")
        conn.execute("DROP INDEX pv1_inbox_subject_prefix_ix")
        conn.execute("CREATE INDEX pv1_provider_city_ix ON pv1_provider (city)")
        conn.execute("CREATE INDEX pv1_provider_company_name_ix ON pv1_provider (company_name)")
        conn.execute("CREATE INDEX pv1_inbox_subject_ix ON pv1_inbox (subject)")
        conn.execute("DROP TABLE view_set_aside")
        conn.execute("DELETE FROM view_generation WHERE name='schema'")
        conn.execute("DROP INDEX stored_events_chain_subject_key_idx")
        conn.execute(
            "CREATE INDEX stored_events_chain_subject_idx ON stored_events_chain (subject) "
            "WHERE originator_version = 1"
        )
    monkeypatch.setattr(generations, "_upgraded", set())
    before = head(store)
    store.ingest(violation(A, "2026-02-01"))
    # The violation and, since 1.1, its idempotency key's marker (lifecycle/records.py).
    assert head(store) == before + 2
    later = ProviderLifecycle(env=persistence_env(store.url))  # the store opened again
    try:
        projector = Projector(later, ViewDatabase(store.url))
        assert projector.catch_up() == 2
        doc = store.read_model.provider(A)
        assert doc is not None and doc["violations"] == 1
        projector.close()
        indexes = _indexes(store)
        assert {"pv1_provider_city_ix", "pv1_provider_company_name_ix"} & indexes == set()
        assert "pv1_inbox_subject_ix" not in indexes
        assert {
            "pv1_provider_city_prefix_ix",
            "pv1_provider_company_name_prefix_ix",
            "pv1_inbox_subject_prefix_ix",
            "stored_events_chain_subject_key_idx",
        } <= indexes
        assert "stored_events_chain_subject_idx" not in indexes
        assert store.sql("SELECT generation FROM view_generation WHERE name='schema'") == [
            (generations.SCHEMA_VERSION,)
        ]
        assert store.sql("SELECT COUNT(*) FROM view_set_aside") == [(0,)]
    finally:
        later.close()


def test_the_chains_subject_index_is_bounded_and_subject_streams_stay_exact(
    store: Store,
) -> None:
    base = "S" * 64  # both share the indexed prefix
    # 1.1 keeps no subject over 64 characters or with U+0000 on a malformed record (the
    # application's own bound), so none of these can come in through ``process`` any more;
    # a store written before 1.1 holds them, and its chain must still be indexed and read.
    store.app.save(
        *(
            malformed_before_1_1(f"kafka:in:0:{90 + n}", subject)
            for n, subject in enumerate([base + "1", base + "2", "x" * 3000, "n\x00"])
        )
    )
    store.ingest(event("provider.Applied", "y" * 3000, {}))  # 1.1: kept without its subject
    recorder = store.app.recorder
    with recorder.audit_reader() as reader:  # type: ignore[attr-defined]
        assert len(reader.subject_streams(base + "1")) == 1
        assert len(reader.subject_streams(base + "2")) == 1
        assert reader.subject_streams(base) == []
        assert len(reader.subject_streams("x" * 3000)) == 1
        assert len(reader.subject_streams("n\x00")) == 1 and reader.subject_streams("n") == []
        assert reader.subject_streams("y" * 3000) == []
    plan = " ".join(
        str(r)
        for r in store.sql(
            "EXPLAIN QUERY PLAN SELECT originator_id FROM stored_events_chain "
            "WHERE substr(subject, 1, 64) = substr(?, 1, 64) AND +subject = ? "
            "AND originator_version = 1",
            ("a", "a"),
        )
    )
    assert "SEARCH" in plan and "subject_key_idx" in plan


# --- whatever the store accepted -----------------------------------------------------------------

awkward_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(["\x00", "名", "a", "\\", '"', "…"]), max_size=30),
    st.integers(201, 3000).map(lambda n: "城" * n),
)
awkward_amounts = st.one_of(
    st.integers(1, 10**7), st.integers(2**53, 2**70), st.sampled_from([10**20, 2**63])
)


@given(
    st.lists(
        # (The stats count cities by a bounded key: the oracle compares them whole.)
        st.tuples(
            st.sampled_from([A, B]), awkward_text, st.sampled_from(["杭州", ""]), awkward_amounts
        ),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_the_store_accepted_is_projected_equal_to_a_replay_and_translated(
    applications: list[tuple[str, str, str, int]],
) -> None:
    """Awkward values where the payload allows them (the 1.1 JSON rules may make some of
    these records malformed; whatever is accepted is projected and published)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = Store(Path(tmp) / "store.db")
        try:
            for n, (subject, name, city, amount) in enumerate(applications):
                day = f"2026-0{n + 1}-01"
                s.ingest(
                    applied(subject, day, company_name=name, service_city=city, entity_city=city),
                    admitted(subject, day),
                    deposit_paid(subject, day, amount),
                    exited(subject, day),
                )
            projector = s.projector(batch_size=3)
            assert projector.catch_up() == head(s)
            assert status_report(s.app, ViewDatabase(s.url))["set_aside_total"] == 0
            assert_views_equal_replay(s.app, s.read_model, DATES)
            page = Relay(s.app, RelayConfig("kafka:9", "out", "refused", "dlq")).translate_page(
                s.app.process_recorder.select_notifications(1, 1000)
            )
            assert page.set_aside == []
            accepted = sum(1 for o in page.outgoing if o.topic == "out")
            assert accepted == sum(1 for _ in s.app.iter_events() if isinstance(_, Provider.Event))
            for o in page.outgoing:
                if o.topic != "dlq":
                    json.loads(o.value)
        finally:
            s.close()
