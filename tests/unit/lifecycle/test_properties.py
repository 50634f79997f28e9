"""Property tests over random event streams (1-3 providers, random types, dates, flags).

(a) replaying the stored events rebuilds the state judged live;
(b) every input gets exactly one outcome, in input order, and the store's stats match;
(c) eligibility never says ``can_apply: true`` while a permanent restriction exists;
(d) accepted business dates never go backwards per provider (``ORDER``), and eligibility
    says what an application on a later day would get (its clause is the refusal code).
"""

from __future__ import annotations

import copy
import json
import tempfile
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.application import ProviderLifecycle
from lifecycle.contract import Envelope
from lifecycle.parsing import parse_record
from lifecycle.provider import Provider, judge
from tests.factories import (
    DEPOSIT_FEN,
    applied,
    line,
    message,
    popo_app,
    sqlite_env,
)
from tests.strategies import FIRST_DAY, LAST_DAY, SUBJECTS, days, streams

SHANGHAI = ZoneInfo("Asia/Shanghai")
OUTCOMES = {"accepted", "refused", "malformed", "duplicate"}
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _chunks(items: list[bytes], cuts: list[int]) -> list[list[bytes]]:
    bounds = sorted({c % (len(items) + 1) for c in cuts} | {0, len(items)})
    return [items[a:b] for a, b in pairwise(bounds) if b > a]


def _live_oracle(raws: list[bytes]) -> tuple[list[str], dict[str, Provider]]:
    """Judge the stream with the aggregate alone, never storing or reloading it."""
    providers: dict[str, Provider] = {}
    outcomes: list[str] = []
    # CONTRACT.md 1.1: a repeated (source, id) of an accepted or refused event, for any
    # provider, is a duplicate (the 1.0 key was the id alone, and accepted ids per provider)
    judged: set[tuple[str, str]] = set()
    now = datetime(2030, 1, 1, tzinfo=SHANGHAI)
    for raw in raws:
        parsed = parse_record(raw)
        if not isinstance(parsed, Envelope):
            outcomes.append("malformed")
            continue
        if (parsed.source, parsed.id) in judged:
            outcomes.append("duplicate")
            continue
        judgement = judge(providers.get(parsed.subject), parsed, now)
        outcomes.append(judgement.outcome)
        if judgement.outcome in ("accepted", "refused"):
            judged.add((parsed.source, parsed.id))
        if judgement.outcome == "accepted":
            assert judgement.provider is not None
            providers[parsed.subject] = judgement.provider
    return outcomes, providers


def _snapshot(p: Provider) -> dict[str, Any]:
    return {
        "status": p.status,
        "deposit_balance_fen": p.deposit_balance_fen,
        "violations": list(p.violations),
        "milestones": list(p.milestones),
        "accepted_ids": set(p.accepted_ids),
        "version": p.version,
    }


# --- (a) replay rebuilds the same state -----------------------------------------------


@given(streams(), st.lists(st.integers(0, 40), max_size=3))
@PROPERTY
def test_replaying_stored_events_rebuilds_the_live_state(raws: list[bytes], cuts: list[int]):
    expected_outcomes, live = _live_oracle(raws)
    with tempfile.TemporaryDirectory() as tmp:
        env = sqlite_env(str(Path(tmp) / "x.db"))
        writer = ProviderLifecycle(env=env)
        got: list[str] = []
        n = 0
        for chunk in _chunks(raws, cuts):
            results = writer.process([message(r, f"prop:{n + i}") for i, r in enumerate(chunk)])
            n += len(chunk)
            got += [r.outcome for r in results]
        writer.close()
        assert got == expected_outcomes

        reader = ProviderLifecycle(env=env)
        try:
            for subject in SUBJECTS:
                stored = reader.provider(subject)
                if subject not in live:
                    assert stored is None
                    continue
                assert stored is not None
                assert _snapshot(stored) == _snapshot(live[subject])
                for as_of in (FIRST_DAY, date(2026, 6, 30), LAST_DAY + timedelta(days=365)):
                    assert stored.eligibility(as_of) == live[subject].eligibility(as_of)
            assert reader.stats()["consumed"] == len(raws)
        finally:
            reader.close()


# --- (b) exactly one outcome per input, stats agree ------------------------------------


@given(streams(), st.lists(st.integers(0, 40), max_size=4))
@PROPERTY
def test_every_input_gets_exactly_one_outcome_and_stats_match(raws: list[bytes], cuts: list[int]):
    app = popo_app()
    results = []
    n = 0
    for chunk in _chunks(raws, cuts):
        msgs = [message(r, f"prop:{n + i}") for i, r in enumerate(chunk)]
        n += len(chunk)
        batch = app.process(msgs)
        assert [r.position for r in batch] == [m.position for m in msgs]
        results += batch
    assert len(results) == len(raws)
    assert all(r.outcome in OUTCOMES for r in results)
    for raw, r in zip(raws, results, strict=True):
        assert (r.outcome == "malformed") == (not isinstance(parse_record(raw), Envelope))
        if r.outcome == "refused":
            assert r.codes and r.reason
    stats = app.stats()
    assert stats["consumed"] == len(raws)
    for outcome in OUTCOMES:
        assert stats[outcome] == sum(r.outcome == outcome for r in results)

    for subject in SUBJECTS:
        p = app.provider(subject)
        if p is None:
            continue
        assert p.status in {"applied", "admitted", "active", "exited", "expelled", "declined"}
        if p.status in {"exited", "expelled", "declined"}:
            assert p.deposit_balance_fen == 0
        if p.status == "active":
            assert p.deposit_balance_fen >= DEPOSIT_FEN
        if p.status == "admitted":
            assert p.deposit_balance_fen < DEPOSIT_FEN


# --- (c) permanent means never ---------------------------------------------------------


def _shanghai_day(time: str) -> date:
    return datetime.fromisoformat(time.replace("Z", "+00:00")).astimezone(SHANGHAI).date()


@given(streams(), st.lists(days, min_size=1, max_size=5))
@PROPERTY
def test_eligibility_never_allows_an_application_while_a_permanent_ban_exists(
    raws: list[bytes], extra_days: list[date]
):
    app = popo_app()
    results = app.process([message(r, f"prop:{i}") for i, r in enumerate(raws)])
    bans: dict[str, list[date]] = {}
    for raw, r in zip(raws, results, strict=True):
        parsed = parse_record(raw)
        if r.outcome != "accepted" or not isinstance(parsed, Envelope):
            continue
        data = parsed.data
        if parsed.type == "provider.ReadmissionDecided":
            # A1.3-1: a permanent restriction the platform's decision set (A1.4)
            if data["readmission"].get("permanent") is True:
                bans.setdefault(parsed.subject, []).append(_shanghai_day(raw_time(raw)))
            continue
        if parsed.type != "provider.Expelled":
            continue
        # A1.3-4, or A1.3-1 with the permanent restriction that came with the event
        # (the field is the other rulebook's restriction for A1.2.2-4 and A3-2).
        forever = (data["readmission"] or {}).get("permanent") is True
        if data["ground"] == "A1.2.2-3" or (data["ground"] in ("A1.2.2-4", "A3-2") and forever):
            bans.setdefault(parsed.subject, []).append(_shanghai_day(raw_time(raw)))
    for subject, ban_days in bans.items():
        p = app.provider(subject)
        assert p is not None
        first_ban = min(ban_days)
        candidates = {first_ban, first_ban + timedelta(days=180), date(2099, 12, 31)}
        candidates |= {d for d in extra_days if d >= first_ban}
        for as_of in candidates:
            e = p.eligibility(as_of)
            assert e.can_apply is False, (as_of, e)


def raw_time(raw: bytes) -> str:
    return str(json.loads(raw)["time"])


# --- (d) ORDER, and eligibility agrees with the judgement of an application ----------------


@given(streams())
@PROPERTY
def test_accepted_business_dates_never_go_backwards_per_provider(raws: list[bytes]):
    app = popo_app()
    results = app.process([message(r, f"prop:{i}") for i, r in enumerate(raws)])
    last_day: dict[str, date] = {}
    for raw, r in zip(raws, results, strict=True):
        parsed = parse_record(raw)
        if not isinstance(parsed, Envelope):
            continue
        before = last_day.get(parsed.subject)
        if r.outcome == "accepted":
            assert before is None or parsed.business_date >= before
            last_day[parsed.subject] = parsed.business_date
        elif r.outcome == "refused" and before is not None and parsed.business_date < before:
            assert r.codes == ["ORDER"]  # ORDER first, and alone
        elif r.outcome == "refused":
            assert "ORDER" not in r.codes


@given(streams(), st.integers(0, 400), st.booleans())
@PROPERTY
def test_eligibility_clause_is_what_an_application_that_day_is_refused_with(
    raws: list[bytes], later: int, meets_a11: bool
):
    _, live = _live_oracle(raws)
    for subject, provider in live.items():
        day = provider.last_business_date + timedelta(days=later)
        e = provider.eligibility(day)
        overrides = {} if meets_a11 else {"registered_capital_fen": 1}
        candidate = parse_record(line(applied(subject, day, **overrides)))
        assert isinstance(candidate, Envelope)
        judgement = judge(copy.deepcopy(provider), candidate, datetime(2030, 1, 1, tzinfo=UTC))
        if e.can_apply is False:
            assert (judgement.outcome, judgement.codes) == ("refused", [e.clause])
        elif e.can_apply is None:  # manual review (A1.4)
            assert (judgement.outcome, judgement.codes) == ("refused", ["A1.4"])
        elif e.requires == "A1.1" and not meets_a11:
            assert (judgement.outcome, judgement.codes) == ("refused", ["A1.3-2"])
        else:
            assert judgement.outcome == "accepted", (e, judgement)
