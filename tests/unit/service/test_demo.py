"""The demo stream (``service/demo.py``): deterministic, well-formed where meant, realistic."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from lifecycle.contract import Envelope
from lifecycle.evaluate import evaluate
from lifecycle.parsing import parse_record
from lifecycle.uscc import is_valid_uscc
from service.demo import generate, write
from service.demo import records as demo_records

PROVIDERS = 2000  # the CLI default; evaluating it takes well under a second
AS_OF = date(2026, 11, 27)

Records = list[tuple[bytes, str, tuple[str, ...]]]


@pytest.fixture(scope="module")
def records() -> Records:
    return list(demo_records(PROVIDERS, 7, date(2024, 1, 1)))


@pytest.fixture(scope="module")
def lines(records: Records) -> list[bytes]:
    return [line for line, _, _ in records]


@pytest.fixture(scope="module")
def report(lines: list[bytes]) -> dict[str, Any]:
    return evaluate(lines, as_of=AS_OF)


def _envelopes(lines: list[bytes]) -> list[Envelope]:
    """Well-formed records, first sending only (re-sends dropped)."""
    seen: set[str] = set()
    out = []
    for line in lines:
        parsed = parse_record(line)
        if isinstance(parsed, Envelope) and parsed.id not in seen:
            seen.add(parsed.id)
            out.append(parsed)
    return out


def test_same_arguments_give_the_same_bytes(lines: list[bytes]) -> None:
    assert list(generate()) == lines  # the defaults: 2000 providers, seed 7, from 2024-01-01
    assert list(generate(150, seed=3)) == list(generate(150, seed=3))
    assert list(generate(150, seed=3)) != list(generate(150, seed=4))


def test_one_utf8_json_line_per_record(lines: list[bytes]) -> None:
    for line in lines:
        assert isinstance(line, bytes)
        assert b"\n" not in line and b"\r" not in line
        line.decode("utf-8")
    chinese = "有限公司".encode()
    assert any(chinese in line for line in lines)  # ensure_ascii=False


def test_size_and_valid_usccs(lines: list[bytes]) -> None:
    assert 3 * PROVIDERS <= len(lines) <= 10 * PROVIDERS
    subjects = {e.subject for e in _envelopes(lines)}
    assert len(subjects) == PROVIDERS
    assert all(is_valid_uscc(s) for s in subjects)


def test_ids_times_and_order(lines: list[bytes]) -> None:
    envelopes = _envelopes(lines)
    ids = [e.id for e in envelopes]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("demo-") and len(i) == 12 for i in ids)
    last: dict[str, datetime] = {}
    for e in envelopes:
        assert e.source == "/taobao-live/provider-admin"
        offset = e.time.utcoffset()
        assert offset is not None and offset.total_seconds() == 8 * 3600
        assert date(2024, 1, 1) <= e.time.date() <= date(2026, 11, 1)
        # Business time increases per provider.
        assert e.subject not in last or last[e.subject] < e.time
        last[e.subject] = e.time
    # Contact data: Chinese names, 11-digit mobile numbers.
    contacts = [e.data["contact"] for e in envelopes if e.type == "provider.Applied"]
    for contact in contacts:
        assert len(contact["phone"]) == 11 and contact["phone"][:2] in ("13", "15", "18")
    assert len({e.data["entity_city"] for e in envelopes if e.type == "provider.Applied"}) >= 18


def test_resends_are_exact_copies(lines: list[bytes]) -> None:
    seen: set[bytes] = set()
    resent = 0
    for line in lines:
        if line in seen:
            resent += 1
        seen.add(line)
    assert 0.001 * len(lines) < resent < 0.01 * len(lines)


def test_every_record_gets_the_outcome_the_story_means(
    records: Records, report: dict[str, Any]
) -> None:
    outcomes = report["outcomes"]
    assert len(outcomes) == len(records)
    for (line, outcome, codes), got in zip(records, outcomes, strict=True):
        assert got["outcome"] == outcome, line.decode()
        if outcome == "refused":
            assert tuple(got["codes"]) == codes, line.decode()


def test_outcome_mix_is_realistic(report: dict[str, Any]) -> None:
    counts = Counter(o["outcome"] for o in report["outcomes"])
    total = sum(counts.values())
    assert set(counts) == {"accepted", "refused", "malformed", "duplicate"}
    assert counts["accepted"] > 0.9 * total
    assert 0.005 * total < counts["malformed"] < 0.02 * total
    assert 0.001 * total < counts["duplicate"] < 0.01 * total
    codes = {c for o in report["outcomes"] if o["outcome"] == "refused" for c in o["codes"]}
    assert {"STATE", "A1.3-5", "A1.3-1", "A1.2.1-1", "A1.1.1-2b", "A1.1.2", "A1.4"} <= codes
    reasons = {o["reason"].split(":")[0] for o in report["outcomes"] if o["outcome"] == "malformed"}
    assert {
        "invalid_json",
        "unknown_type",
        "invalid_subject",
        "invalid_envelope",
        "invalid_data",
    } <= (reasons)


def test_statuses_and_eligibility(report: dict[str, Any]) -> None:
    providers = report["providers"].values()
    statuses = Counter(p["status"] for p in providers)
    assert {"active", "exited", "expelled", "declined", "admitted", "applied"} <= set(statuses)
    assert statuses.most_common(1)[0][0] == "active"
    eligibility = [p["eligibility"] for p in providers]
    assert any(e["permanent"] for e in eligibility)
    assert any(
        e["can_apply"] is False and e["from"] and e["from"] > AS_OF.isoformat() for e in eligibility
    )
    # manual review (A1.4): some still pending, with the platform to act next
    assert any(e["can_apply"] is None and e["clause"] == "A1.4" for e in eligibility)
    assert any(e["requires"] == "A1.1" for e in eligibility)  # after an A1.2.2-1 expulsion


def test_every_expulsion_ground_and_restriction(lines: list[bytes]) -> None:
    expelled = [e.data for e in _envelopes(lines) if e.type == "provider.Expelled"]
    assert {d["ground"] for d in expelled} == {
        "A1.2.2-1",
        "A1.2.2-2",
        "A1.2.2-3",
        "A1.2.2-4",
        "A3-2",
    }
    restrictions = {json.dumps(d["readmission"] and sorted(d["readmission"])) for d in expelled}
    assert restrictions == {"null", '["until"]', '["permanent"]'}
    assert all(d["violations"] for d in expelled if d["ground"] == "A3-2")
    deposits_paid = Counter(
        e.subject for e in _envelopes(lines) if e.type == "provider.DepositPaid"
    )
    assert any(n >= 2 for n in deposits_paid.values())


def test_manual_reviews_end_with_the_platforms_decision(
    lines: list[bytes], report: dict[str, Any]
) -> None:
    # 1.1: provider.ReadmissionDecided after some A1.2.2-4 / A3-2 expulsions without a
    # restriction, of each kind, all accepted.
    envelopes = _envelopes(lines)
    decisions = [e for e in envelopes if e.type == "provider.ReadmissionDecided"]
    assert {next(iter(d.data["readmission"])) for d in decisions} == {
        "until",
        "permanent",
        "cleared",
    }
    decided_ids = {d.id for d in decisions}
    outcomes = [o["outcome"] for o in report["outcomes"] if o.get("id") in decided_ids]
    assert set(outcomes) == {"accepted"}
    last_expulsion: dict[str, Envelope] = {}
    for e in envelopes:
        if e.type == "provider.Expelled":
            last_expulsion[e.subject] = e
        elif e.type == "provider.ReadmissionDecided":
            expulsion = last_expulsion[e.subject]
            assert expulsion.data["readmission"] is None
            assert expulsion.data["ground"] in ("A1.2.2-4", "A3-2")


def test_write(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    count = write(path, 100, 5)
    expected = list(generate(100, seed=5))
    assert count == len(expected)
    assert path.read_bytes() == b"".join(line + b"\n" for line in expected)
