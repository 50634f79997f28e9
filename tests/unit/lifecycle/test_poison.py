"""A record can never stall its partition (CONTRACT.md 1.1, "malformed … internal_error").

Whatever one record holds, ``ProviderLifecycle.process`` gives it one outcome, in order,
and raises only when the store fails; ``lifecycle evaluate`` answers for every line. What
goes wrong while parsing, judging or encoding one record makes that record ``malformed``
with reason ``internal_error: <Class: message>``, kept (dead-lettered, listable) like any
other; the others are judged as usual.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lifecycle.application as application
from consumers.outgoing import dead_letter
from lifecycle.application import OUTCOMES, InboundMessage, ProviderLifecycle
from lifecycle.evaluate import evaluate
from lifecycle.failures import INTERNAL_ERROR_LIMIT, internal_error, is_store_failure
from lifecycle.inbox import Inbox
from lifecycle.parsing import Malformed
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord, record_id
from tests.factories import (
    DEPOSIT_FEN,
    admitted,
    applied,
    deposit_paid,
    line,
    onboard,
    uscc,
)
from tests.strategies import hostile_records

U = uscc(61)
V = uscc(62)
STORES = ["store.memory:Factory", "store.sqlite:Factory"]
POISON = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The records that stalled a partition or broke ``evaluate`` before 1.1 (issue 9).
KNOWN_POISON = [
    line({**applied(U), "time": "0001-01-01T00:00:00+08:00"}),
    line(applied(U, registered_on="9999-12-31")),
    json.dumps(applied(U, company_name="x\udc00"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    ),
    json.dumps(applied(U, company_name="\udc00")).encode(),  # escaped: ASCII bytes
    line(applied(U, company_name="a\x00b")),
    line({**applied(U), "id": "a\x00b"}),
    line(deposit_paid(U, amount_fen=10**20)),
    line(applied(U, company_name="公" * 4000)),
    line({**applied(U), "subject": "9" * 3000}),
    line({**applied(U), "subject": "".join(chr(0x4E00 + n * 7 % 20000) for n in range(3000))}),
    line({**applied(U), "subject": "a\x00b"}),
    b"[" * 100_000 + b"]" * 100_000,
    "\ufeff".encode() + line(applied(U)),
    line(applied(U)).decode().encode("utf-16"),
    b'{"id": "dup", "id": "dup"}',
    json.dumps({**admitted(U), "id": 2**64}).encode(),
]


def _valid() -> list[bytes]:
    """A valid history after the poison: it must be judged as if the poison were not there."""
    return [line(e) for e in onboard(V, "2026-01-01")]


@pytest.fixture(params=STORES)
def make_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made: list[ProviderLifecycle] = []

    def make() -> ProviderLifecycle:
        env = {"PERSISTENCE_MODULE": request.param, "SQLITE_DBNAME": str(tmp_path / "s.db")}
        made.append(ProviderLifecycle(env=env))
        return made[-1]

    yield make
    for app in made:
        app.close()


def _process_everything(module: str, raws: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PERSISTENCE_MODULE": module, "SQLITE_DBNAME": str(Path(tmp) / "s.db")}
        app = ProviderLifecycle(env=env)
        try:
            records = [*raws, *_valid()]
            messages = [
                InboundMessage(raw, f"kafka:in:0:{n}", raw[:20] or None)
                for n, raw in enumerate(records)
            ]
            results = app.process(messages)  # no exception
            assert [r.position for r in results] == [m.position for m in messages]
            assert all(r.outcome in OUTCOMES for r in results)
            for r in results:
                if r.outcome == "malformed":
                    assert r.reason
                    r.reason.encode("utf-8")  # storable, printable
                    if r.reason.startswith("internal_error"):
                        assert len(r.reason) <= INTERNAL_ERROR_LIMIT
            # the valid history after the poison is judged as if alone
            assert [r.outcome for r in results[-3:]] == ["accepted"] * 3
            v = app.provider(V)
            assert v is not None and (v.status, v.deposit_balance_fen) == ("active", DEPOSIT_FEN)
            # everything stored reads back: stats, records, the inbox
            assert app.stats()["consumed"] == len(records)
            for r in results:
                if r.outcome != "accepted":
                    assert app.record(record_id(r.position)).outcome == r.outcome
        finally:
            app.close()


@pytest.mark.parametrize("module", STORES)
@pytest.mark.parametrize("raw", KNOWN_POISON, ids=range(len(KNOWN_POISON)))
def test_the_records_that_stalled_a_partition_get_an_outcome(module: str, raw: bytes) -> None:
    _process_everything(module, [raw])


@given(st.lists(hostile_records, min_size=1, max_size=8))
@POISON
def test_any_bytes_get_one_outcome_each_in_order_on_the_memory_store(raws: list[bytes]) -> None:
    _process_everything("store.memory:Factory", raws)


@given(st.lists(hostile_records, min_size=1, max_size=6))
@settings(POISON, max_examples=60)
def test_any_bytes_get_one_outcome_each_in_order_on_sqlite(raws: list[bytes]) -> None:
    _process_everything("store.sqlite:Factory", raws)


@given(st.lists(hostile_records, min_size=1, max_size=8))
@example([*KNOWN_POISON, b"", b"  \r"])
@POISON
def test_evaluate_answers_for_every_line_of_any_bytes(raws: list[bytes]) -> None:
    lines = [*raws, *_valid()]
    report = evaluate([raw + b"\n" for raw in lines], date(2026, 6, 1))
    records = [raw for raw in lines if raw.strip()]  # blank lines are no records
    assert len(report["outcomes"]) == len(records)
    assert all(o["outcome"] in OUTCOMES for o in report["outcomes"])
    assert [o["outcome"] for o in report["outcomes"][-3:]] == ["accepted"] * 3
    assert report["providers"][V]["status"] == "active"
    # what `lifecycle evaluate --json` prints: UTF-8 whatever the input held
    json.dumps(report, ensure_ascii=False).encode("utf-8")


# --- an internal error is the record's, not the batch's ----------------------------------------


def test_an_exception_judging_one_record_makes_it_malformed_and_the_others_are_judged(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    judge = application.judge

    def flaky(provider: Any, envelope: Any, recorded_at: Any) -> Any:
        if envelope.id == "poison":
            raise KeyError("no such rule")
        return judge(provider, envelope, recorded_at)

    monkeypatch.setattr(application, "judge", flaky)
    results = app.process(
        [
            InboundMessage(line(applied(U, "2026-01-01")), "kafka:in:0:0", U.encode()),
            InboundMessage(line(admitted(U, "2026-01-02", id="poison")), "kafka:in:0:1"),
            InboundMessage(line(admitted(U, "2026-01-02")), "kafka:in:0:2"),
        ]
    )
    assert [r.outcome for r in results] == ["accepted", "malformed", "accepted"]
    assert results[1].reason == "internal_error: KeyError: 'no such rule'"
    assert (results[1].id, results[1].subject) == ("poison", U)
    # kept like any malformed record: listed in the inbox, dead-lettered by the relay
    record = app.record(record_id("kafka:in:0:1"))
    assert (record.outcome, record.reason, record.ce_id) == (
        "malformed",
        results[1].reason,
        "poison",
    )
    entries = list(Inbox(app, lambda records, by: 0).entries(outcome="malformed"))
    assert [e.position for e in entries] == ["kafka:in:0:1"]
    received = next(e for e in app.iter_events() if isinstance(e, InboundRecord.Received))
    headers = dict(dead_letter(received, "dlq").headers)
    assert headers["x-error"] == results[1].reason.encode()
    # a malformed record reserves nothing: the same id, once it can be judged, is judged
    monkeypatch.setattr(application, "judge", judge)
    again = app.process([InboundMessage(line(deposit_paid(U, "2026-01-03", id="poison")), "k:3")])
    assert [r.outcome for r in again] == ["accepted"]


def test_a_failure_half_way_through_changing_a_provider_leaves_no_trace_of_it(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    evolve = Provider.DepositPaid.evolve

    def half_way(self: Any, p: Provider) -> None:
        evolve(self, p)  # the balance has changed …
        if self.data["payment_ref"] == "PAY-POISON":
            raise ZeroDivisionError("… and then the rule failed")

    monkeypatch.setattr(Provider.DepositPaid, "evolve", half_way)
    # The poison is dated after the deposit that follows it: had its failed judgement left
    # its business date behind, that deposit would be refused ``ORDER`` (1.1); and the same
    # poison again (a malformed record reserves nothing) is not dated before it either, so
    # it is judged, and fails, again.
    poison = deposit_paid(U, "2026-01-04", DEPOSIT_FEN)
    poison["data"]["payment_ref"] = "PAY-POISON"
    results = app.process(
        [
            InboundMessage(line(e), f"kafka:in:0:{n}")
            for n, e in enumerate(
                [
                    applied(U, "2026-01-01"),
                    admitted(U, "2026-01-02"),
                    poison,
                    deposit_paid(U, "2026-01-03", 1),
                    poison,
                ]
            )
        ]
    )
    assert [r.outcome for r in results] == [
        "accepted",
        "accepted",
        "malformed",
        "accepted",
        "malformed",
    ]
    assert results[2].reason == "internal_error: ZeroDivisionError: … and then the rule failed"
    u = app.provider(U)
    assert u is not None and (u.status, u.deposit_balance_fen, u.version) == ("admitted", 1, 3)
    monkeypatch.setattr(Provider.DepositPaid, "evolve", evolve)
    # the cache holds what the store holds: the next batch goes on from there
    later = app.process([InboundMessage(line(deposit_paid(U, "2026-01-05")), "kafka:in:0:5")])
    assert [r.outcome for r in later] == ["accepted"]
    fresh = make_app() if app.env["PERSISTENCE_MODULE"] != "store.memory:Factory" else app
    u = fresh.provider(U)
    assert u is not None and (u.status, u.deposit_balance_fen) == ("active", DEPOSIT_FEN + 1)


def test_an_exception_encoding_one_record_makes_it_malformed(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    encode = app.mapper.to_stored_event

    def fussy(event: Any) -> Any:
        if getattr(event, "ce_id", None) == "unencodable":
            raise ValueError("cannot encode")
        return encode(event)

    monkeypatch.setattr(app.mapper, "to_stored_event", fussy)
    results = app.process(
        [
            InboundMessage(line(applied(U, "2026-01-01", id="unencodable")), "kafka:in:0:0"),
            InboundMessage(line(applied(U, "2026-01-01")), "kafka:in:0:1"),
        ]
    )
    assert [r.outcome for r in results] == ["malformed", "accepted"]
    assert results[0].reason == "internal_error: ValueError: cannot encode"
    u = app.provider(U)
    assert u is not None and u.version == 1


def test_an_exception_parsing_one_record_makes_it_malformed(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    parse = application.parse_record

    def fragile(raw: bytes) -> Any:
        if b"fragile" in raw:
            raise MemoryError()
        return parse(raw)

    monkeypatch.setattr(application, "parse_record", fragile)
    results = app.process(
        [
            InboundMessage(line(applied(U, id="fragile")), "kafka:in:0:0"),
            InboundMessage(line(applied(U, id="fine")), "kafka:in:0:1"),
        ]
    )
    assert [r.outcome for r in results] == ["malformed", "accepted"]
    assert results[0].reason == "internal_error: MemoryError"
    assert results[0].id is None


UNINDEXABLE_SUBJECTS = [
    # (subject, the reason code 1.1 gives the record that carries it)
    ("a\x00b", "nul_character"),  # a JSON rule since 1.1: the parser names it first
    ("9" * 3000, "invalid_subject"),
    ("\udc00", "lone_surrogate"),  # a JSON rule since 1.1: the parser names it first
    ("a\x1fb", "invalid_subject"),
]


@pytest.mark.parametrize(("subject", "code"), UNINDEXABLE_SUBJECTS)
def test_a_malformed_record_keeps_no_subject_the_store_could_not_index(
    make_app: Any, subject: str, code: str
) -> None:
    # PostgreSQL text holds no U+0000 and a B-tree row at most ~2.7 kB: the chain's subject
    # index would refuse the batch on every retry (issue 9); the bytes are kept as they came.
    # Before 1.1 every one of these was ``invalid_subject``; a NUL or a lone surrogate now
    # breaks a JSON rule, and the reason says which (CONTRACT.md 1.1, JSON rules).
    app = make_app()
    raw = json.dumps({**applied(U), "subject": subject}).encode()
    [result] = app.process([InboundMessage(raw, "kafka:in:0:0")])
    assert result.outcome == "malformed" and result.subject is None
    assert result.reason is not None and result.reason.startswith(f"{code}: subject")
    record = app.record(record_id("kafka:in:0:0"))
    assert record.subject is None and record.raw == raw
    [kept] = app.process(
        [InboundMessage(json.dumps({**applied(U), "subject": "BAD"}).encode(), "k:1")]
    )
    assert kept.subject == "BAD"  # a short one is kept: the provider page lists the record


@pytest.mark.parametrize("subject", [subject for subject, _ in UNINDEXABLE_SUBJECTS])
def test_the_application_keeps_no_unindexable_subject_whatever_the_parser_hands_over(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, subject: str
) -> None:
    # The 1.1 parser no longer hands a NUL or a lone surrogate over (the test above cannot
    # reach the application's own bound with them any more): a parser that does, as the 1.0
    # one did, still gets no such subject into the store.
    monkeypatch.setattr(
        application,
        "parse_record",
        lambda raw: Malformed("invalid_subject: handed over", "e-1", subject),
    )
    app = make_app()
    [result] = app.process([InboundMessage(b"{}", "kafka:in:0:0")])
    assert (result.outcome, result.id, result.subject) == ("malformed", "e-1", None)
    assert result.reason == "invalid_subject: handed over"
    assert app.record(record_id("kafka:in:0:0")).subject is None


def test_the_reason_is_bounded_and_storable() -> None:
    reason = internal_error(ValueError("\x00\udc00" + "x" * 10_000))
    assert reason.startswith("internal_error: ValueError: \\x00\\udc00xxx")
    assert len(reason) == INTERNAL_ERROR_LIMIT and reason.endswith("…")
    reason.encode("utf-8")


# --- only the store's failures propagate --------------------------------------------------------


class FakeDriverError(Exception):
    """Looks like a database driver's error (recognised by module, as psycopg's are)."""


FakeDriverError.__module__ = "psycopg.errors"


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("database is down"),
        sqlite3.OperationalError("database is locked"),
        FakeDriverError("server closed the connection"),
    ],
    ids=["library", "sqlite3", "psycopg"],
)
def test_a_store_failure_while_judging_propagates_and_nothing_is_kept(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    app = make_app()
    app.process([InboundMessage(line(applied(U, "2026-01-01")), "kafka:in:0:0")])
    app.clear_cache()
    assert is_store_failure(error)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(app.repository, "get", down)
    with pytest.raises(type(error)):
        app.process([InboundMessage(line(admitted(U, "2026-01-02")), "kafka:in:0:1")])
    monkeypatch.undo()
    assert app.stats()["consumed"] == 1
    again = app.process([InboundMessage(line(admitted(U, "2026-01-02")), "kafka:in:0:1")])
    assert [r.outcome for r in again] == ["accepted"]


def test_a_store_failure_as_the_cause_is_the_stores() -> None:
    try:
        try:
            raise sqlite3.DatabaseError("disk I/O error")
        except sqlite3.DatabaseError as inner:
            raise RuntimeError("could not load") from inner
    except RuntimeError as outer:
        assert is_store_failure(outer)
    assert not is_store_failure(RuntimeError("a bug"))
    assert not is_store_failure(KeyError("a bug"))
