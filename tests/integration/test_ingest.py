"""Ingestion through the real Kafka broker into the real stores."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from consumers.inbound import InboundConfig, InboundConsumer
from consumers.topics import ensure_topics
from lifecycle.application import OUTCOMES, ProviderLifecycle
from lifecycle.evaluate import evaluate
from lifecycle.provider import Provider
from lifecycle.schemas import json_schemas
from service.demo import generate
from store.url import persistence_env
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


def offline_counts(lines: list[bytes]) -> Counter[str]:
    report = evaluate(lines, AS_OF)
    return Counter(o["outcome"] for o in report["outcomes"])


@functools.cache
def published_schema(name: str) -> Draft202012Validator:
    """A validator of the published JSON Schema ``name`` (``lifecycle schemas``), formats too."""
    return Draft202012Validator(
        json_schemas()[name], format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def published_errors(name: str, record: object) -> list[str]:
    return [error.message for error in published_schema(name).iter_errors(record)]


def accepted_ids(store: str) -> list[str]:
    app = ProviderLifecycle(env=persistence_env(store))
    return [e.ce_id for e in app.iter_events() if isinstance(e, Provider.Event)]


@pytest.mark.slow
def test_exactly_once_across_sigkill_and_restart(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    lines = list(generate(providers=1500, seed=11))
    env = topics.env(kafka_bootstrap, postgres_store, LIFECYCLE_BATCH_SIZE="40")
    produced = produce_lines(kafka_bootstrap, topics.inbound, lines)
    assert produced == len(lines)

    service = Service(env, tmp_path / "run.log").start()
    consumed_before_kill = wait_for(
        lambda: stats_or_zero(postgres_store),
        120,
        "the first batches to be recorded",
    )
    service.kill()
    # Mid-stream: the kill interrupted the work (each batch is at most 40 records).
    assert 0 < consumed_before_kill < len(lines)

    service = Service(env, tmp_path / "run.log").start()
    try:
        wait_for(
            lambda: stats(postgres_store)["consumed"] >= len(lines), 240, "all records consumed"
        )
        service.assert_alive()
    finally:
        assert service.stop() == 0

    counts = stats(postgres_store)
    assert counts["consumed"] == len(lines)
    expected = offline_counts(lines)
    assert {k: counts[k] for k in expected} == dict(expected)
    ids = accepted_ids(postgres_store)
    assert len(ids) == len(set(ids)) == expected["accepted"]


def stats_or_zero(store: str) -> int:
    try:
        return stats(store)["consumed"]
    except Exception:  # tables not created yet by the first start
        return 0


def test_resent_event_at_new_offset_is_duplicate(
    kafka_bootstrap: str, sqlite_store: str, topics: Topics, tmp_path: Path
) -> None:
    lines = list(generate(providers=5, seed=3))
    first_accepted = next(
        line
        for line, o in zip(lines, evaluate(lines, AS_OF)["outcomes"], strict=True)
        if o["outcome"] == "accepted" and json.loads(line)["type"] == "provider.DepositPaid"
    )
    stream = [*lines, first_accepted]
    produce_lines(kafka_bootstrap, topics.inbound, stream, partitions=1)
    service = Service(topics.env(kafka_bootstrap, sqlite_store), tmp_path / "run.log").start()
    try:
        wait_for(lambda: stats_or_zero(sqlite_store) >= len(stream), 120, "all consumed")
    finally:
        assert service.stop() == 0
    counts = stats(sqlite_store)
    offline = offline_counts(lines)
    assert counts["duplicate"] == offline["duplicate"] + 1
    assert counts["accepted"] == offline["accepted"]
    # No second effect: the deposit counted once.
    uscc = json.loads(first_accepted)["subject"]
    report = evaluate(lines, AS_OF)["providers"][uscc]
    provider = ProviderLifecycle(env=persistence_env(sqlite_store)).provider(uscc)
    assert provider is not None
    assert provider.deposit_balance_fen == report["deposit_balance_fen"]


def test_dead_letters_refusals_and_outbound_feed(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    lines = list(generate(providers=120, seed=5))
    produce_lines(kafka_bootstrap, topics.inbound, lines)
    offline = evaluate(lines, AS_OF)
    counts = Counter(o["outcome"] for o in offline["outcomes"])
    assert counts["malformed"] and counts["refused"], "the sample must exercise both"

    service = Service(topics.env(kafka_bootstrap, postgres_store), tmp_path / "run.log").start()
    try:
        wait_for(lambda: stats_or_zero(postgres_store) >= len(lines), 120, "all consumed")
        app = ProviderLifecycle(env=persistence_env(postgres_store))
        last = app.process_recorder.max_notification_id()
        wait_for(lambda: (app.position("relay:kafka") or 0) >= (last or 0), 120, "relay caught up")
    finally:
        assert service.stop() == 0

    # Dead letters: the original bytes and key, unchanged, with the contract's headers.
    inbound = {(r.partition, r.offset): r for r in read_topic(kafka_bootstrap, topics.inbound)}
    dlq = read_topic(kafka_bootstrap, topics.dlq)
    assert len(dlq) == counts["malformed"]
    for record in dlq:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["x-original-topic"] == topics.inbound
        original = inbound[
            (int(headers["x-original-partition"]), int(headers["x-original-offset"]))
        ]
        assert record.value == original.value
        assert record.key == original.key
        assert headers["x-error"].split(":", 1)[0] in {
            "invalid_json",
            "not_an_object",
            "invalid_envelope",
            "unknown_type",
            "invalid_subject",
            "invalid_data",
        }

    # Refusals: provider.Refused with the inbound event, its codes and reason.
    refused = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics.refused)]
    assert len(refused) == counts["refused"]
    offline_refusals = {
        o["id"]: o["codes"] for o in offline["outcomes"] if o["outcome"] == "refused"
    }
    for event in refused:
        assert event["type"] == "provider.Refused"
        assert event["data"]["codes"] == offline_refusals[event["data"]["event"]["id"]]
        assert not published_errors("refused", event), event["id"]

    # Outbound: every accepted event, per provider in order, sequence 1, 2, 3 … contiguous.
    outbound = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics.outbound)]
    accepted = [o["id"] for o in offline["outcomes"] if o["outcome"] == "accepted"]
    assert sorted(e["id"] for e in outbound) == sorted(accepted)
    by_provider: dict[str, list[int]] = defaultdict(list)
    for event in outbound:  # read in partition order; a provider lives in one partition
        by_provider[event["subject"]].append(event["sequence"])
        assert event["recordedtime"] and event["time"]
        assert not published_errors("outbound", event), event["id"]
    for sequences in by_provider.values():
        assert sequences == list(range(1, len(sequences) + 1))


def test_two_consumers_in_one_group_judge_every_record_once(
    kafka_bootstrap: str, postgres_store: str, topics: Topics
) -> None:
    lines = list(generate(providers=300, seed=17))
    asyncio.run(ensure_topics(kafka_bootstrap, {topics.inbound: 6}))
    env = persistence_env(postgres_store)
    config = InboundConfig(kafka_bootstrap, topics.inbound, topics.group, batch_size=50)
    judged: list[Counter[str]] = [Counter(), Counter()]

    async def both() -> None:
        stop = asyncio.Event()
        consumers = [
            InboundConsumer(
                ProviderLifecycle(env=env),
                config,
                on_results=lambda rs, i=i: judged[i].update(r.position for r in rs),
            )
            for i in range(2)
        ]
        tasks = [asyncio.create_task(c.run(stop)) for c in consumers]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 180
        # Both members must hold partitions before any record exists, or one could do it all.
        while not all(c.assignment() for c in consumers):
            assert loop.time() < deadline, "the group never gave both consumers partitions"
            await asyncio.sleep(0.1)  # polling the group's assignment
        assignments = [c.assignment() for c in consumers]
        assert len(assignments[0] | assignments[1]) == 6
        assert not assignments[0] & assignments[1]
        await asyncio.to_thread(produce_lines, kafka_bootstrap, topics.inbound, lines, 6)
        app = ProviderLifecycle(env=env)
        while (await asyncio.to_thread(lambda: app.stats()["consumed"])) < len(lines):
            assert loop.time() < deadline, "timed out"
            await asyncio.sleep(0.2)  # polling the store's count, not standing in for sync
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(both())
    counts = stats(postgres_store)
    assert counts["consumed"] == len(lines)
    assert {k: counts[k] for k in ("accepted", "refused", "malformed", "duplicate")} == {
        k: offline_counts(lines)[k] for k in ("accepted", "refused", "malformed", "duplicate")
    }
    # Both consumers worked, and no position was recorded by both.
    assert judged[0] and judged[1]
    assert not (set(judged[0]) & set(judged[1]))


def test_live_and_offline_evaluation_agree(
    kafka_bootstrap: str, sqlite_store: str, topics: Topics, tmp_path: Path
) -> None:
    """A stream through Kafka gives the same outcomes and providers as `lifecycle evaluate`."""
    lines = list(generate(providers=150, seed=23))
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(lines) + b"\n")
    env = topics.env(kafka_bootstrap, sqlite_store)
    sent = subprocess.run(
        [LIFECYCLE, "produce", str(events_file)], env=env, capture_output=True, check=True
    )
    assert f"sent {len(lines)} records".encode() in sent.stdout
    service = Service(env, tmp_path / "run.log").start()
    try:
        wait_for(lambda: stats_or_zero(sqlite_store) >= len(lines), 120, "all consumed")
    finally:
        assert service.stop() == 0
    offline = json.loads(
        subprocess.run(
            [LIFECYCLE, "evaluate", str(events_file), "--as-of", str(AS_OF), "--json"],
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    )
    live = json.loads(
        subprocess.run(
            [LIFECYCLE, "stats", "--json"], env=env, capture_output=True, check=True
        ).stdout
    )
    expected = Counter(o["outcome"] for o in offline["outcomes"])
    assert live == {"consumed": len(lines), **{k: expected[k] for k in OUTCOMES}}
    app = ProviderLifecycle(env=persistence_env(sqlite_store))
    for uscc, entry in offline["providers"].items():
        provider = app.provider(uscc)
        if entry["status"] is None:
            assert provider is None
            continue
        assert provider is not None
        assert provider.status == entry["status"]
        assert provider.deposit_balance_fen == entry["deposit_balance_fen"]
        assert len(provider.violations) == entry["violations"]
        assert provider.eligibility(AS_OF).as_dict() == entry["eligibility"]
