"""Idempotency by (``source``, ``id``) across providers (CONTRACT.md 1.1, "A repeated …").

A repeated (source, id) of an event that was accepted or refused, for any provider, is a
duplicate, recognised first and judged no further; another source's same id is another
event; a malformed record reserves nothing; only an operator's re-submission judges a
refused event again. The check is one query per batch, on every store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count, pairwise
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.application import InboundMessage, ProviderLifecycle, Result
from lifecycle.contract import Envelope
from lifecycle.parsing import parse_record
from lifecycle.provider import Provider, judge
from lifecycle.records import EventKey, event_key, record_id
from tests.factories import (
    DEPOSIT_FEN,
    SOURCE,
    admitted,
    applied,
    deposit_paid,
    exited,
    line,
    message,
    uscc,
)
from tests.strategies import colliding_streams

U = uscc(51)
V = uscc(52)
W = uscc(53)
OTHER_SOURCE = "/taobao-live/risk-control"
NOW = datetime(2030, 1, 1, tzinfo=UTC)

#: Every kind of store the service runs on: the port's three adapters and the library's
#: own recorders (``lifecycle evaluate`` uses ``eventsourcing.popo``).
STORES = [
    "store.memory:Factory",
    "store.sqlite:Factory",
    "eventsourcing.popo",
    "eventsourcing.sqlite",
]


def _env(module: str, path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": module, "SQLITE_DBNAME": str(path)}


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield _env(request.param, tmp_path / "store.db")


@pytest.fixture
def app(store: dict[str, str]) -> Iterator[ProviderLifecycle]:
    application = ProviderLifecycle(env=store)
    yield application
    application.close()


def from_source(event: dict[str, Any], source: str) -> dict[str, Any]:
    return {**event, "source": source}


def outcomes(results: list[Result]) -> list[str]:
    return [r.outcome for r in results]


def run(app: ProviderLifecycle, *events: dict[str, Any] | bytes, again: bool = False) -> list[str]:
    return outcomes(
        app.process(
            [InboundMessage(line(e), f"t:{next(_positions)}", resubmitted=again) for e in events]
        )
    )


_positions = count()


# --- the key is (source, id), across providers ------------------------------------------------


def test_an_accepted_key_is_a_duplicate_for_any_provider(app: ProviderLifecycle) -> None:
    assert run(app, applied(U, id="k")) == ["accepted"]
    assert run(app, applied(V, id="k"), admitted(U, id="k")) == ["duplicate", "duplicate"]
    assert app.provider(V) is None
    u = app.provider(U)
    assert u is not None and u.status == "applied"


def test_a_refused_key_is_a_duplicate_for_any_provider(app: ProviderLifecycle) -> None:
    assert run(app, admitted(U, id="k")) == ["refused"]  # never applied
    assert run(app, applied(V, id="k"), applied(U, id="k")) == ["duplicate", "duplicate"]
    assert app.provider(U) is None and app.provider(V) is None


def test_the_same_id_from_another_source_is_another_event(app: ProviderLifecycle) -> None:
    pay = deposit_paid(U, amount_fen=DEPOSIT_FEN // 2, id="pay")
    assert run(app, applied(U), admitted(U), pay) == ["accepted"] * 3
    other = from_source(deposit_paid(U, amount_fen=DEPOSIT_FEN // 2, id="pay"), OTHER_SOURCE)
    assert run(app, other, pay) == ["accepted", "duplicate"]
    assert run(app, from_source(applied(V, id="pay"), "/another/system")) == ["accepted"]
    u = app.provider(U)
    assert u is not None and (u.status, u.deposit_balance_fen) == ("active", DEPOSIT_FEN)


def test_a_source_and_id_that_only_concatenate_alike_are_two_keys() -> None:
    assert event_key("/a", "b/c") != event_key("/a/b", "c")
    assert event_key("/a", '","x') != event_key('/a","', "x")
    assert event_key("/a", "\udc00") != event_key("/a", "\udc01")  # any text has a key


def test_one_key_for_two_subjects_in_one_batch_judges_the_first(app: ProviderLifecycle) -> None:
    # CONTRACT.md: "the one recorded first is judged and the other is the duplicate"
    assert run(app, applied(V, id="k"), applied(U, id="k"), applied(W, id="k")) == [
        "accepted",
        "duplicate",
        "duplicate",
    ]
    assert app.provider(V) is not None
    assert app.provider(U) is None and app.provider(W) is None


def test_a_refusal_reserves_its_key_within_the_batch_too(app: ProviderLifecycle) -> None:
    assert run(app, admitted(U, id="k"), applied(U, id="k"), applied(U, id="other")) == [
        "refused",
        "duplicate",
        "accepted",
    ]


def test_a_malformed_record_reserves_nothing(app: ProviderLifecycle) -> None:
    broken = {**applied(U, id="k"), "data": {"company_name": 7}}
    assert run(app, broken, broken) == ["malformed", "malformed"]
    assert run(app, applied(U, id="k"), applied(U, id="k")) == ["accepted", "duplicate"]


def test_a_duplicate_is_recognised_before_anything_is_judged(app: ProviderLifecycle) -> None:
    # The repeat would be refused (a tenure is open): it is a duplicate, no refusal.
    first = applied(U, "2026-01-01", id="k")
    assert run(app, first) == ["accepted"]
    results = app.process([message(first, "t:dup")])
    assert outcomes(results) == ["duplicate"] and results[0].codes == []
    assert app.record(record_id("t:dup")).outcome == "duplicate"


@pytest.mark.parametrize("module", ["store.sqlite:Factory", "eventsourcing.sqlite"])
def test_keys_are_remembered_by_a_new_instance_on_the_same_store(
    module: str, tmp_path: Path
) -> None:
    store = _env(module, tmp_path / "store.db")
    first = ProviderLifecycle(env=store)
    run(first, applied(U, id="a"), admitted(V, id="r"))
    first.close()
    second = ProviderLifecycle(env=store)
    try:
        assert run(second, applied(W, id="a"), applied(W, id="r"), applied(W, id="n")) == [
            "duplicate",
            "duplicate",
            "accepted",
        ]
    finally:
        second.close()


# --- re-submissions ------------------------------------------------------------------------


def test_only_a_resubmission_judges_a_refused_event_again(app: ProviderLifecycle) -> None:
    early = admitted(U, "2026-01-02", id="adm")
    assert run(app, early, applied(U, "2026-01-01")) == ["refused", "accepted"]
    assert run(app, early) == ["duplicate"]
    assert run(app, early, again=True) == ["accepted"]
    # accepted at last: from now on a duplicate, re-submitted or not
    assert run(app, early) == ["duplicate"]
    assert run(app, early, again=True) == ["duplicate"]
    marker = app.repository.get(event_key(SOURCE, "adm"))
    assert isinstance(marker, EventKey) and marker.accepted and marker.outcome == "refused"


def test_a_resubmitted_event_refused_again_stays_judgeable_by_resubmission(
    app: ProviderLifecycle,
) -> None:
    leave = exited(U, "2026-01-05", id="x")
    assert run(app, leave) == ["refused"]
    assert run(app, leave, again=True) == ["refused"]
    assert run(app, applied(U, "2026-01-01"), admitted(U, "2026-01-02")) == ["accepted"] * 2
    assert run(app, leave, again=True) == ["accepted"]


def test_a_resubmission_of_an_accepted_key_is_a_duplicate(app: ProviderLifecycle) -> None:
    first = applied(U, id="k")
    assert run(app, first) == ["accepted"]
    assert run(app, first, again=True) == ["duplicate"]


def test_a_resubmitted_malformed_record_whose_key_was_taken_since_is_a_duplicate(
    app: ProviderLifecycle,
) -> None:
    # An internal error made the first copy malformed; the corrected event came since and was
    # refused; the operator re-submits the malformed record: it is not the refused one.
    assert run(app, admitted(U, "2026-01-02", id="k")) == ["refused"]
    malformed = app.process([message(b"{", "t:m")])
    assert outcomes(malformed) == ["malformed"]
    copy = InboundMessage(
        line(admitted(U, "2026-01-02", id="k")),
        "t:copy",
        resubmitted=True,
        resubmit_of=record_id("t:m"),
    )
    assert outcomes(app.process([copy])) == ["duplicate"]


def test_a_resubmission_in_the_batch_that_accepted_its_key_is_a_duplicate(
    app: ProviderLifecycle,
) -> None:
    early = admitted(U, "2026-01-02", id="adm")
    assert run(app, early, applied(U, "2026-01-01")) == ["refused", "accepted"]
    msgs = [
        InboundMessage(line(early), "t:r1", resubmitted=True),
        InboundMessage(line(early), "t:r2", resubmitted=True),
    ]
    assert outcomes(app.process(msgs)) == ["accepted", "duplicate"]


# --- two processes at once -----------------------------------------------------------------


def test_two_processes_judging_one_key_at_once_judge_it_once(tmp_path: Path) -> None:
    env = _env("store.sqlite:Factory", tmp_path / "store.db")
    one, other = ProviderLifecycle(env=env), ProviderLifecycle(env=env)
    try:
        run(one, applied(U, id="warm-1"))
        run(other, applied(V, id="warm-2"))
        save = other._save_with_positions

        def meanwhile(*args: Any, **kwargs: Any) -> None:
            # ``one`` stores the key after ``other`` looked it up, before ``other`` saves.
            assert run(one, admitted(U, id="k")) == ["accepted"]
            save(*args, **kwargs)

        other._save_with_positions = meanwhile  # type: ignore[method-assign]
        with pytest.raises(IntegrityError):
            run(other, admitted(V, id="k"))
        other._save_with_positions = save  # type: ignore[method-assign]
        assert run(other, admitted(V, id="k")) == ["duplicate"]  # the batch judged again
        v = other.provider(V)
        assert v is not None and v.status == "applied"
    finally:
        one.close()
        other.close()


# --- batched: one query per batch -------------------------------------------------------------


def test_the_check_is_one_query_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env("store.sqlite:Factory", tmp_path / "store.db")
    writer = ProviderLifecycle(env=env)
    events = [applied(uscc(600 + n), id=f"a-{n}") for n in range(50)]
    events += [admitted(uscc(700 + n), id=f"r-{n}") for n in range(50)]  # refused
    assert set(run(writer, *events)) == {"accepted", "refused"}
    writer.close()

    app = ProviderLifecycle(env=env)
    recorder = app.recorder
    present: list[int] = []
    reads: list[UUID] = []
    select_present = recorder.select_present_originators  # type: ignore[attr-defined]
    select_events = recorder.select_events

    def spy_present(ids: Any) -> Any:
        present.append(len(ids))
        return select_present(ids)

    def spy_events(originator_id: UUID, *args: Any, **kwargs: Any) -> Any:
        reads.append(originator_id)
        return select_events(originator_id, *args, **kwargs)

    monkeypatch.setattr(recorder, "select_present_originators", spy_present)
    monkeypatch.setattr(recorder, "select_events", spy_events)
    repeats = [applied(uscc(800 + n), id=f"a-{n}") for n in range(50)]
    repeats += [applied(uscc(900 + n), id=f"r-{n}") for n in range(50)]
    assert run(app, *repeats) == ["duplicate"] * 100
    # one query for the batch's unknown providers, one for its keys; no read per record
    assert sorted(present) == [100, 100]
    assert reads == []
    app.close()


# --- the property: random streams with ids colliding across providers and sources ---------


def _oracle(raws: list[bytes]) -> list[str]:
    """CONTRACT.md 1.1 with the aggregate alone, never storing or reloading anything."""
    providers: dict[str, Provider] = {}
    judged: set[tuple[str, str]] = set()
    out: list[str] = []
    for raw in raws:
        parsed = parse_record(raw)
        if not isinstance(parsed, Envelope):
            out.append("malformed")
            continue
        if (parsed.source, parsed.id) in judged:
            out.append("duplicate")
            continue
        judgement = judge(providers.get(parsed.subject), parsed, NOW)
        out.append(judgement.outcome)
        judged.add((parsed.source, parsed.id))
        if judgement.provider is not None and judgement.outcome == "accepted":
            providers[parsed.subject] = judgement.provider
    return out


@given(colliding_streams(), st.lists(st.integers(0, 40), max_size=3), st.sampled_from(STORES))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_every_store_deduplicates_by_source_and_id_as_the_contract_says(
    tmp_path_factory: pytest.TempPathFactory, raws: list[bytes], cuts: list[int], module: str
) -> None:
    env = _env(module, tmp_path_factory.mktemp("p") / "s.db")
    app = ProviderLifecycle(env=env)
    try:
        bounds = sorted({c % (len(raws) + 1) for c in cuts} | {0, len(raws)})
        got: list[str] = []
        for a, b in pairwise(bounds):
            got += outcomes(
                app.process([message(r, f"p:{a + i}") for i, r in enumerate(raws[a:b])])
            )
        assert got == _oracle(raws)
        assert app.stats()["consumed"] == len(raws)
    finally:
        app.close()
