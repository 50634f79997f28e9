"""``ProviderLifecycle``: one outcome per record, kept records, stats, exactly-once effect."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.provider import Provider
from lifecycle.records import record_id
from tests.factories import (
    DEPOSIT_FEN,
    admitted,
    applied,
    deposit_paid,
    exited,
    expelled,
    line,
    message,
    onboard,
    process,
    uscc,
)

U = uscc(31)
V = uscc(32)


def test_process_returns_one_result_per_message_in_order(app: ProviderLifecycle):
    msgs = [
        message(applied(U, "2026-01-01", id="a"), "p:1"),
        message(b"nonsense", "p:2"),
        message(admitted(V, "2026-01-02", id="b"), "p:3"),
        message(applied(U, "2026-01-01", id="a"), "p:4"),
    ]
    results = app.process(msgs)
    assert [r.position for r in results] == ["p:1", "p:2", "p:3", "p:4"]
    assert [r.outcome for r in results] == ["accepted", "malformed", "refused", "duplicate"]
    assert [r.id for r in results] == ["a", None, "b", "a"]
    assert results[2].codes == ["STATE"]
    assert results[1].reason and results[1].reason.startswith("invalid_json")


def test_stats_count_every_outcome_and_consumed_is_their_sum(app: ProviderLifecycle):
    process(
        app,
        *onboard(U, "2025-01-01"),
        b"{",
        exited(U, "2026-01-01", settled=False),
    )
    dup = applied(V, "2026-01-01", id="v-app")
    process(app, dup, dup)
    assert app.stats() == {
        "consumed": 7,
        "accepted": 4,
        "refused": 1,
        "malformed": 1,
        "duplicate": 1,
    }


def test_refused_malformed_and_duplicate_records_are_kept_with_reason_and_bytes(
    app: ProviderLifecycle,
):
    refused = admitted(U, "2026-01-01", id="early")
    bad = b'{"id": "x", "type": "provider.Applied"'
    first = applied(V, "2026-01-01", id="once")
    app.process(
        [
            InboundMessage(line(refused), "kafka:in:0:0", U.encode()),
            InboundMessage(bad, "kafka:in:0:1", None),
            InboundMessage(line(first), "kafka:in:0:2", V.encode()),
            InboundMessage(line(first), "kafka:in:0:3", V.encode()),
        ]
    )
    r = app.record(record_id("kafka:in:0:0"))
    assert (r.outcome, r.ce_id, r.subject, r.codes) == ("refused", "early", U, ["STATE"])
    assert r.reason
    assert r.raw == line(refused) and r.key == U.encode()
    assert r.event is not None and r.event["type"] == "provider.Admitted"
    assert r.event["id"] == "early"

    m = app.record(record_id("kafka:in:0:1"))
    assert m.outcome == "malformed" and m.raw == bad and m.key is None
    assert m.reason is not None and m.reason.startswith("invalid_json")

    d = app.record(record_id("kafka:in:0:3"))
    assert (d.outcome, d.ce_id) == ("duplicate", "once")


def test_an_accepted_event_keeps_its_cloudevent_id_source_and_business_time(
    app: ProviderLifecycle,
):
    fixed = datetime(2030, 1, 1, tzinfo=UTC)
    app = ProviderLifecycle(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=lambda: fixed)
    process(app, applied(U, "2026-01-01T20:00:00Z", id="a-1"))
    events = list(app.events.get(app.provider(U).id))  # type: ignore[union-attr]
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, Provider.Event)
    assert ev.ce_id == "a-1"
    assert ev.ce_source == "/taobao-live/provider-admin"
    assert ev.business_date == date(2026, 1, 2)  # Shanghai date of the upstream time
    assert ev.recorded_at == fixed  # processing time is kept apart
    assert ev.data["registered_capital_fen"] == applied(U)["data"]["registered_capital_fen"]


def test_business_time_not_the_clock_drives_the_rules():
    # Processing "years later" must give the same answer as processing at once.
    events = [*onboard(U, "2025-01-01"), exited(U, "2026-01-01"), applied(U, "2026-06-29")]
    now = ProviderLifecycle({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    later = ProviderLifecycle(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=lambda: datetime(2040, 1, 1, tzinfo=UTC)
    )
    a = [r.outcome for r in process(now, *events)]
    b = [r.outcome for r in process(later, *events)]
    assert a == b == ["accepted"] * 4 + ["refused"]


def test_duplicates_are_detected_across_batches(app: ProviderLifecycle):
    pay = deposit_paid(U, "2026-01-03", id="pay")
    process(app, applied(U, "2026-01-01"), admitted(U, "2026-01-02"), pay)
    assert [r.outcome for r in process(app, pay)] == ["duplicate"]
    p = app.provider(U)
    assert p is not None and p.deposit_balance_fen == DEPOSIT_FEN


def test_duplicates_are_detected_by_a_new_instance_on_the_same_store(sqlite_app):
    first, env = sqlite_app
    pay = deposit_paid(U, "2026-01-03", id="pay")
    process(first, applied(U, "2026-01-01"), admitted(U, "2026-01-02"), pay)
    second = ProviderLifecycle(env=env)
    try:
        assert [r.outcome for r in process(second, pay)] == ["duplicate"]
        p = second.provider(U)
        assert p is not None
        assert (p.status, p.deposit_balance_fen) == ("active", DEPOSIT_FEN)
        assert second.stats()["consumed"] == 4
    finally:
        second.close()


def test_state_survives_a_restart_on_sqlite(sqlite_app):
    first, env = sqlite_app
    process(first, *onboard(U, "2025-01-01"), expelled(U, "2026-03-01", "A1.2.2-2"))
    second = ProviderLifecycle(env=env)
    try:
        p = second.provider(U)
        assert p is not None and p.status == "expelled"
        e = p.eligibility(date(2026, 3, 2)).as_dict()
        assert (e["can_apply"], e["clause"], e["from"]) == (False, "A1.3-3", "2026-08-28")
        # and the rules keep applying to what was stored before the restart
        results = process(second, applied(U, "2026-08-27"), applied(U, "2026-08-28"))
        assert [r.outcome for r in results] == ["refused", "accepted"]
    finally:
        second.close()


def test_provider_as_of_time_travels_on_business_dates(app: ProviderLifecycle):
    process(app, *onboard(U, "2025-01-01"), exited(U, "2026-01-01"))
    before = app.provider_as_of(U, date(2025, 12, 31))
    assert before is not None and before.status == "active"
    assert app.provider_as_of(U, date(2024, 12, 31)) is None
    after = app.provider_as_of(U, date(2026, 1, 1))
    assert after is not None and after.status == "exited"


def test_unknown_provider_reads_as_none(app: ProviderLifecycle):
    assert app.provider(U) is None


def test_iter_events_yields_everything_in_store_order(app: ProviderLifecycle):
    process(app, *onboard(U, "2025-01-01"), b"[]")
    kinds = [type(e).__qualname__ for e in app.iter_events()]
    # each accepted event is followed by its idempotency key's marker (CONTRACT.md 1.1)
    key = "EventKey.Noted"
    assert kinds == [
        "Provider.Applied",
        key,
        "Provider.Admitted",
        key,
        "Provider.DepositPaid",
        key,
        "InboundRecord.Received",
    ]
    assert json.loads(line(applied(U)))["subject"] == U


def test_a_failed_batch_leaves_no_trace_and_the_next_batch_starts_from_the_store(
    app: ProviderLifecycle,
):
    process(app, applied(U, "2026-01-01"))
    # Two records claiming the same inbound position cannot both be kept: the save fails.
    clash = [
        message(admitted(U, "2026-01-02"), "kafka:in:0:7"),
        InboundMessage(b"x", "kafka:in:0:8"),
        InboundMessage(b"y", "kafka:in:0:8"),
    ]
    with pytest.raises(Exception):  # noqa: B017 - whatever the store raises
        app.process(clash)
    p = app.provider(U)
    assert p is not None and p.status == "applied"  # the Admitted was not stored
    # ...and not kept in a cache either: the same Admitted is judged (and accepted) again
    assert [r.outcome for r in process(app, admitted(U, "2026-01-02"))] == ["accepted"]
    assert app.stats()["consumed"] == 2


def test_a_kept_record_can_be_marked_resubmitted(app: ProviderLifecycle):
    app.process([InboundMessage(b"nope", "kafka:in:0:9")])
    record = app.record(record_id("kafka:in:0:9"))
    record.resubmit("operator", datetime(2026, 1, 1, tzinfo=UTC))
    app.save(record)
    assert app.record(record_id("kafka:in:0:9")).resubmissions == 1


def test_A1_1_1_3_the_shortfall_is_shown_on_the_provider(app: ProviderLifecycle):
    from tests.factories import deposit_deducted

    process(app, *onboard(U, "2025-01-01"), deposit_deducted(U, "2025-02-01", 2_500_000))
    p = app.provider(U)
    assert p is not None
    assert p.status == "admitted"
    assert p.deposit_shortfall_fen == 2_500_000
    process(app, deposit_paid(U, "2025-02-02", 2_500_000))
    p = app.provider(U)
    assert p is not None and (p.status, p.deposit_shortfall_fen) == ("active", 0)
