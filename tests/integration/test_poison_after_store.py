"""Poison records between valid ones, through a real Kafka partition, ``lifecycle run`` and
PostgreSQL (ISSUE 9, deliverable 2: "the same holds after the store").

Whatever the store accepted is projected and published, and every malformed record is
dead-lettered with a bounded ``x-error``: a 3 kB subject (kept without it since 1.1), a
~900 KB record and one at Kafka's 1 MB limit whose reason is that long too (the DLQ topic's
room), a 600 KB reason (``x-error``), a 4,000-character company name (the views' indexes),
U+0000 and a deposit of 10^20 fen (accepted by 1.0 parsing, malformed under the 1.1 JSON
rules: the expected outcome of every line is ``lifecycle evaluate``'s). What still cannot be
published (a DLQ topic provisioned too small) is set aside, reported, and stops nothing.
On PostgreSQL directly: an old store's U+0000, integers beyond ``bigint`` and 3 kB subjects
project, and an old chain's whole-subject index is replaced in place and holds long subjects.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from audit.verify import verify as verify_chain
from consumers.outgoing import X_ERROR_MAX_BYTES
from consumers.topics import DEFAULT_MAX_MESSAGE_BYTES, ensure_topics, topic_limits
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.evaluate import evaluate
from projections import writer as writer_module
from projections.database import ViewDatabase
from projections.generations import new_generation
from projections.model import InboxFilter
from projections.projector import Projector
from projections.rebuild import status_report, verify
from projections.views import open_read_model
from store.url import persistence_env
from tests.factories import (
    admitted,
    applied,
    applied_data,
    deposit_paid,
    event,
    line,
    malformed_before_1_1,
    onboard,
    uscc,
    violation,
)
from tests.integration.harness import (
    LIFECYCLE,
    Service,
    Topics,
    produce_lines,
    read_topic,
    stats,
    wait_for,
)

pytestmark = pytest.mark.integration

AS_OF = date(2026, 11, 27)
A, B, C, D, E = (uscc(n) for n in range(951, 956))


def incompressible(n: int, first: int, size: int, seed: int = 9) -> str:
    """``n`` characters drawn from ``size`` code points from ``first``: PostgreSQL compresses
    an index row before it checks its size, so a repeated character would fit."""
    rng = random.Random(seed)
    return "".join(chr(first + rng.randrange(size)) for _ in range(n))


NAME_4000 = incompressible(4000, 0x4E00, 20_000)  # CJK: 12,000 bytes of UTF-8
SUBJECT_3K = incompressible(3000, 0x21, 94)  # printable ASCII


def sized(record: dict[str, Any], size: int) -> bytes:
    """``record`` as one line of exactly ``size`` bytes (padded in ``data.advantage_statement``)."""
    record = json.loads(json.dumps(record))
    record["data"]["advantage_statement"] = ""
    short = len(line(record))
    record["data"]["advantage_statement"] = "x" * (size - short)
    out = line(record)
    assert len(out) == size
    return out


def unknown_type(size: int) -> bytes:
    """A malformed record of ``size`` bytes whose reason (``unknown_type``) is as long."""
    record = event("provider.X", C, {}, "2026-01-05")
    short = len(line(record))
    record["type"] = "provider.X" + "Y" * (size - short)
    out = line(record)
    assert len(out) == size
    return out


#: The largest record the inbound producer sends (``max_request_size``, with the batch's
#: overhead and the key) and the inbound topic takes (Kafka's default ``max.message.bytes``),
#: whose dead letter (x-error of 1 KiB, x-original-*) would not fit a topic of the default size.
AT_THE_LIMIT = 1_048_300


def poison_stream() -> list[bytes]:
    return [
        *(line(r) for r in onboard(A, "2026-01-01")),
        line(event("provider.Applied", SUBJECT_3K, applied_data(), "2026-01-02")),
        line(applied(B, "2026-01-02", company_name=NAME_4000)),
        sized(event("provider.Applied", "not-a-uscc", applied_data(), "2026-01-02"), 900_000),
        line(admitted(B, "2026-01-03")),
        unknown_type(600_000),  # a 600 KB reason
        unknown_type(AT_THE_LIMIT),
        line(deposit_paid(B, "2026-01-04")),
        line(applied(C, "2026-01-04", company_name="零\u0000字节")),
        line(deposit_paid(A, "2026-01-05", 10**20)),
        b"{not json",
        line(violation(A, "2026-01-06")),
        *(line(r) for r in onboard(D, "2026-01-07")),
    ]


def _views_caught_up(store: str, head: int) -> bool:
    try:
        report = status_report(ProviderLifecycle(env=persistence_env(store)), ViewDatabase(store))
    except Exception:  # the views' tables are not made yet
        return False
    return all(v["position"] >= head for v in report["views"] if v["state"] == "live")


def run_service(
    kafka_bootstrap: str, store: str, topics: Topics, tmp_path: Path, lines: list[bytes]
) -> tuple[ProviderLifecycle, dict[str, str]]:
    """``lifecycle run`` on one partition until everything is consumed, published and
    projected; the store's application and the service's environment."""
    env = topics.env(kafka_bootstrap, store, LIFECYCLE_PARTITIONS="1", LIFECYCLE_BATCH_SIZE="5")
    assert produce_lines(kafka_bootstrap, topics.inbound, lines, partitions=1) == len(lines)
    service = Service(env, tmp_path / "run.log").start()
    try:
        wait_for(lambda: _consumed(store) >= len(lines), 180, "every record consumed")
        app = ProviderLifecycle(env=persistence_env(store))
        head = int(app.process_recorder.max_notification_id() or 0)
        wait_for(lambda: (app.position("relay:kafka") or 0) >= head, 120, "the relay caught up")
        wait_for(lambda: _views_caught_up(store, head), 120, "the views caught up")
        service.assert_alive()  # never exited and restarted
    finally:
        assert service.stop() == 0
    log = (tmp_path / "run.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    return app, env


def _consumed(store: str) -> int:
    try:
        return stats(store)["consumed"]
    except Exception:  # tables not created yet by the first start
        return 0


def test_poison_records_between_valid_ones_stop_nothing_after_the_store(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    lines = poison_stream()
    assert len(lines[5]) == 900_000 and len(lines[8]) == AT_THE_LIMIT
    assert AT_THE_LIMIT + X_ERROR_MAX_BYTES > DEFAULT_MAX_MESSAGE_BYTES
    offline = evaluate(lines, AS_OF)
    expected = Counter(o["outcome"] for o in offline["outcomes"])
    # 1.0 parsing accepts U+0000 and 10^20 (12 accepted, 5 malformed); 1.1's JSON rules
    # make them malformed (10 and 7). Either way every line's outcome is ``evaluate``'s.
    assert expected["accepted"] >= 10 and expected["malformed"] >= 5

    app, env = run_service(kafka_bootstrap, postgres_store, topics, tmp_path, lines)
    # ``lifecycle run`` made the topics it publishes to with room for a maximal inbound
    # record plus its headers.
    published = [topics.outbound, topics.refused, topics.dlq]
    limits = asyncio.run(topic_limits(kafka_bootstrap, [topics.inbound, *published]))
    assert all(limits[t] >= limits[topics.inbound] + 2 * X_ERROR_MAX_BYTES for t in published)

    # Accepted: every valid record, the ones after the poisons too.
    counts = stats(postgres_store)
    assert counts["consumed"] == len(lines)
    assert {k: counts[k] for k in expected} == dict(expected)

    # Published on the outbound topic, in order, each a CloudEvent with its content-type.
    outbound_records = read_topic(kafka_bootstrap, topics.outbound)
    outbound = [json.loads(r.value) for r in outbound_records]
    accepted = [o["id"] for o in offline["outcomes"] if o["outcome"] == "accepted"]
    assert [e["id"] for e in outbound] == accepted  # one partition: store order
    for record in outbound_records:
        assert ("content-type", b"application/cloudevents+json; charset=UTF-8") in record.headers
    by_provider: dict[str, list[int]] = defaultdict(list)
    for e in outbound:
        by_provider[e["subject"]].append(e["sequence"])
    assert all(s == list(range(1, len(s) + 1)) for s in by_provider.values())
    assert by_provider[D] == [1, 2, 3]  # the last records, after every poison
    [b_applied] = [e for e in outbound if e["subject"] == B and e["sequence"] == 1]
    assert b_applied["data"]["company_name"] == NAME_4000

    # Dead-lettered: the original bytes, with an x-error of at most 1 KiB.
    inbound = {r.offset: r for r in read_topic(kafka_bootstrap, topics.inbound)}
    dlq = read_topic(kafka_bootstrap, topics.dlq)
    malformed = [(i, o) for i, o in enumerate(offline["outcomes"]) if o["outcome"] == "malformed"]
    assert len(dlq) == len(malformed)
    for record, (offset, outcome) in zip(dlq, malformed, strict=True):
        headers = dict(record.headers)
        assert int(headers["x-original-offset"]) == offset
        assert record.value == inbound[offset].value == lines[offset]
        assert record.key == inbound[offset].key
        error = headers["x-error"]
        assert len(error) <= X_ERROR_MAX_BYTES
        reason = outcome["reason"]
        if len(reason.encode()) <= X_ERROR_MAX_BYTES:
            assert error.decode() == reason
        else:
            assert error.decode().endswith("…") and reason.startswith(error.decode()[:-1])
    assert max(len(r.value) for r in dlq) == AT_THE_LIMIT  # its dead letter got through

    # Projected: every provider with an accepted event, as ``evaluate`` says.
    read_model = open_read_model(postgres_store)
    try:
        for subject, provider in offline["providers"].items():
            doc = read_model.provider(subject)
            assert doc is not None, subject
            assert doc["status"] == provider["status"], subject
            assert doc["deposit_balance_fen"] == provider["deposit_balance_fen"], subject
        doc = read_model.provider(B)
        assert doc is not None and doc["company_name"] == NAME_4000
        listed = read_model.inbox(InboxFilter(outcome="malformed"), limit=100)
        assert listed.total == expected["malformed"]
        # 1.1 keeps no subject over 64 characters on a malformed record (lifecycle/
        # application.py), so the 3 kB one is listed, dead-lettered, without it; old stores
        # that hold such subjects are the PostgreSQL tests below.
        [long] = [i for i in listed.items if i["position"].rsplit(":", 1)[1] == "3"]
        assert long["subject"] is None and long["reason"].startswith("invalid_subject")
        assert all(i["subject"] is None or len(i["subject"]) <= 64 for i in listed.items)
    finally:
        read_model.close()

    # Nothing had to be set aside; ``projections status`` says so.
    report = json.loads(
        subprocess.run(
            [LIFECYCLE, "projections", "status", "--json"],
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    )
    assert report["set_aside_total"] == 0 and report["relay"]["set_aside_total"] == 0
    app.close()


def test_a_dead_letter_a_provisioned_topic_cannot_take_is_set_aside_and_reported(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    """A DLQ topic provisioned with less room than the service asks for (left as it is):
    the ~900 KB dead letter is set aside — logged, counted, listed by ``projections status``
    — and every record after it is published."""
    asyncio.run(
        ensure_topics(
            kafka_bootstrap, {topics.dlq: 1}, {topics.dlq: {"max.message.bytes": "200000"}}
        )
    )
    limits = topics.create(kafka_bootstrap, partitions=1)  # as ``lifecycle run`` does
    assert limits[topics.dlq] == 200_000  # provisioned: left as it is
    assert limits[topics.outbound] >= limits[topics.inbound] + 2 * X_ERROR_MAX_BYTES
    big = sized(event("provider.Applied", "not-a-uscc", applied_data(), "2026-01-02"), 900_000)
    lines = [*(line(r) for r in onboard(A)), big, b"{not json", *(line(r) for r in onboard(B))]
    app, env = run_service(kafka_bootstrap, postgres_store, topics, tmp_path, lines)

    outbound = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics.outbound)]
    assert [(e["subject"], e["sequence"]) for e in outbound] == [
        (A, 1),
        (A, 2),
        (A, 3),
        (B, 1),
        (B, 2),
        (B, 3),
    ]
    assert [r.value for r in read_topic(kafka_bootstrap, topics.dlq)] == [b"{not json"]
    report = json.loads(
        subprocess.run(
            [LIFECYCLE, "projections", "status", "--json"],
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    )
    relay = report["relay"]
    assert relay["set_aside_total"] == 1
    [entry] = relay["set_aside"]
    assert entry["topic"] == topics.dlq and entry["reason"].startswith("too_large: ")
    log = (tmp_path / "run.log").read_text()
    assert f"notification {entry['notification_id']} (to {topics.dlq}) cannot be published" in log
    assert "not-a-uscc" not in log  # never the record's content
    app.close()


# --- PostgreSQL directly: an old store -----------------------------------------------------------


def _rewrite(url: str, marker: bytes, new: bytes) -> None:
    """Change a provider event's stored bytes as a store written before the 1.1 JSON rules
    may hold them (such a store has no idempotency-key markers: the marker of 1.1, which
    holds the event's id too, is left as it is)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT notification_id, state FROM provider_lifecycle_events "
            "WHERE position(%s in state) > 0 AND topic LIKE 'lifecycle.provider:%%'",
            (marker,),
        ).fetchall()
        assert len(rows) == 1, rows
        nid, state = rows[0]
        conn.execute(
            "UPDATE provider_lifecycle_events SET state=%s WHERE notification_id=%s",
            (bytes(state).replace(marker, new), nid),
        )


def test_an_old_postgresql_store_with_nul_and_huge_integers_projects(
    postgres_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = ProviderLifecycle(env=persistence_env(postgres_store))
    records = [
        *onboard(A),
        applied(B, company_name="OLD-NAME", service_city="OLD-CITY"),
        deposit_paid(A, "2026-01-05", 12_345),
        applied(C, company_name=NAME_4000, service_city=incompressible(3000, 0x4E00, 9000, 3)),
        violation(A, "2026-01-06", id="OLD-ID"),
    ]
    app.process([InboundMessage(line(r), f"kafka:in:0:{i}") for i, r in enumerate(records)])
    # 1.0 kept a malformed record's 3 kB subject; 1.1 keeps none, so it is saved as stored.
    poison = line(event("provider.Applied", SUBJECT_3K, {}))
    app.save(malformed_before_1_1("kafka:in:0:99", SUBJECT_3K, raw=poison))
    _rewrite(postgres_store, b"OLD-NAME", b"a\\u0000b")
    _rewrite(postgres_store, b"OLD-CITY", b"c\\u0000")
    _rewrite(postgres_store, b"12345", str(10**20).encode())
    _rewrite(postgres_store, b"OLD-ID", b"id\\u0000")
    app.clear_cache()
    head = int(app.process_recorder.max_notification_id() or 0)
    db = ViewDatabase(postgres_store)

    # Today's writer: every value in a form its column holds; nothing set aside.
    projector = Projector(app, db)
    assert projector.catch_up() == head
    projector.close()
    report = status_report(app, db)
    assert report["set_aside_total"] == 0
    read_model = open_read_model(postgres_store, app=app)
    try:
        doc = read_model.provider(A)
        assert doc is not None and doc["deposit_balance_fen"] == 10_000_000 + 10**20
        doc = read_model.provider(B)
        assert doc is not None and doc["company_name"] == "a\x00b"
        doc = read_model.provider(C)
        assert doc is not None and doc["company_name"] == NAME_4000
        assert "id\ufffd" in [t["id"] for t in read_model.timeline(A)]
        [item] = read_model.inbox(InboxFilter(subject=SUBJECT_3K)).items
        assert item["subject"] == SUBJECT_3K
    finally:
        read_model.close()
    assert verify(app, db).ok

    # Without the storable forms, PostgreSQL refuses those rows: they are set aside with
    # its error, in a rebuild generation of their own, and the other rows go on.
    monkeypatch.setattr(writer_module, "storable", lambda table, rows: list(rows))
    scratch = Projector(app, db, generation=new_generation(db, "scratch"))
    assert scratch.catch_up() == head
    scratch.close()
    errors = [
        e["error"]
        for e in status_report(app, db)["set_aside"]
        if e["generation"] == scratch.fixed_generation
    ]
    kinds = {e.split(":", 1)[0] for e in errors}
    assert kinds == {"DataError", "NumericValueOutOfRange", "ProgramLimitExceeded"}, errors
    app.close()
    db.close()


def test_an_old_postgresql_chain_gets_a_bounded_subject_index_in_place(
    postgres_store: str,
) -> None:
    app = ProviderLifecycle(env=persistence_env(postgres_store))
    app.process([InboundMessage(line(applied(A)), "kafka:in:0:0")])
    app.close()
    with psycopg.connect(postgres_store, autocommit=True) as conn:
        conn.execute("DROP INDEX provider_lifecycle_events_chain_subject_key_idx")
        conn.execute(
            "CREATE INDEX provider_lifecycle_events_chain_subject_idx "
            "ON provider_lifecycle_events_chain (subject) WHERE originator_version = 1"
        )
    app = ProviderLifecycle(env=persistence_env(postgres_store))  # opened by today's code
    try:
        with psycopg.connect(postgres_store, autocommit=True) as conn:
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes "
                    "WHERE tablename = 'provider_lifecycle_events_chain'"
                )
            }
        assert "provider_lifecycle_events_chain_subject_idx" not in names
        assert "provider_lifecycle_events_chain_subject_key_idx" in names
        long_subject, nul_subject, prefix = SUBJECT_3K, "n\x00", "P" * 64
        # 1.1 keeps none of these subjects on a malformed record (lifecycle/application.py);
        # a store written before it holds them, so they are saved as it stored them.
        app.save(
            *(
                malformed_before_1_1(f"kafka:in:0:{i + 1}", s)
                for i, s in enumerate((long_subject, nul_subject, prefix + "1"))
            )
        )
        unkept = incompressible(3000, 0x21, 94, seed=10)
        app.process([InboundMessage(line(event("provider.Applied", unkept, {})), "kafka:in:0:9")])
        with app.recorder.audit_reader() as reader:  # type: ignore[attr-defined]
            assert len(reader.subject_streams(long_subject)) == 1
            assert len(reader.subject_streams(nul_subject)) == 1
            assert reader.subject_streams("n") == []
            assert len(reader.subject_streams(prefix + "1")) == 1
            assert reader.subject_streams(prefix + "2") == []
            assert len(reader.subject_streams(A)) == 1
            assert reader.subject_streams(unkept) == []  # 1.1: kept without its subject
        report = verify_chain(app.recorder)  # type: ignore[arg-type]
        assert report.ok, report.as_dict()
    finally:
        app.close()
