"""Hypothesis strategies shared by the property tests: random provider event streams.

A stream has 1-3 providers and random event types, business dates, time zones, flags,
re-sent records and malformed lines; in half of the streams business dates rise with
the stream order. Some hold a manual review (A1.4) and the platform's decision on it.
``colliding_streams`` reuses (source, id) pairs across providers and
sources; ``hostile_records`` are anything a producer could send (arbitrary bytes and JSON,
lone surrogates, U+0000, huge and deep values, valid envelopes with a hostile field).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from hypothesis import strategies as st

from tests.factories import (
    ARTICLE_2,
    CAPABILITIES,
    DEPOSIT_FEN,
    EXPULSION_GROUNDS,
    MIN_CAPITAL_FEN,
    admitted,
    applied,
    declined,
    deposit_deducted,
    deposit_paid,
    exited,
    expelled,
    line,
    readmission_decided,
    uscc,
    violation,
)

SUBJECTS = [uscc(41), uscc(42), uscc(43)]
FIRST_DAY = date(2025, 1, 1)
LAST_DAY = date(2027, 12, 31)

days = st.dates(min_value=FIRST_DAY, max_value=LAST_DAY)
amounts = st.sampled_from([1, 999, 2_500_000, DEPOSIT_FEN // 2, DEPOSIT_FEN - 1, DEPOSIT_FEN])
readmissions = st.one_of(
    st.none(),
    st.just({"permanent": True}),
    days.map(lambda d: {"until": d.isoformat()}),
)
decisions = st.one_of(  # provider.ReadmissionDecided (1.1)
    st.just({"cleared": True}),
    st.just({"permanent": True}),
    days.map(lambda d: {"until": d.isoformat()}),
)
applications = st.one_of(
    st.just({}),
    st.just({}),
    st.just({}),
    st.just({"registered_capital_fen": MIN_CAPITAL_FEN - 1}),
    st.just({"is_store_account": True}),
    st.just({"capabilities": list(CAPABILITIES[1:])}),
    st.just({"entity_type": "individual_business"}),
)


# --- records against the JSON rules (CONTRACT.md 1.1, I-JSON): what the parser must survive --
#
# A record is built as a JSON text from a tree whose objects are ``Members`` (a list of
# name/value pairs, so a name may repeat), then serialised by hand: strings may hold lone
# surrogates (escaped, or as raw UTF-8-style bytes) and U+0000, integers may be huge,
# arrays may be thousands deep, and any value may stand in any field of a valid event.


class Members(list[tuple[str, Any]]):
    """A JSON object as its members in order; unlike a ``dict``, a name may come twice."""


class Deep:
    """An array nested ``depth`` times (written directly: ``json.dumps`` would recurse)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def __repr__(self) -> str:
        return f"Deep({self.depth})"


def as_members(value: Any) -> Any:
    if isinstance(value, dict):
        return Members((k, as_members(v)) for k, v in value.items())
    if isinstance(value, list):
        return [as_members(v) for v in value]
    return value


def json_text(value: Any, *, ascii_only: bool = True, spaced: bool = False) -> bytes:
    """``value`` as JSON bytes; ``ascii_only=False`` writes strings raw, lone surrogates
    included (as the bytes UTF-8 would give them, which UTF-8 forbids)."""
    comma, colon = (", ", " : ") if spaced else (",", ":")

    def text(v: Any) -> str:
        if isinstance(v, Members):
            return "{" + comma.join(text(k) + colon + text(x) for k, x in v) + "}"
        if isinstance(v, list):
            return "[" + comma.join(text(x) for x in v) + "]"
        if isinstance(v, Deep):
            return "[" * v.depth + "]" * v.depth
        return json.dumps(v, ensure_ascii=ascii_only)

    return text(value).encode("utf-8", "surrogatepass")


hostile_characters = st.one_of(
    st.characters(),
    st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ufeff", "\\", '"', ":"]),
)
hostile_strings = st.text(hostile_characters, max_size=12)
hostile_integers = st.one_of(
    st.integers(),
    st.sampled_from([2**53 - 1, 2**53, -(2**53 - 1), -(2**53), 2**63, 2**64, 10**20, 10**400]),
)
#: Member names from a small alphabet, so an object repeats a name now and then.
member_names = st.one_of(
    st.sampled_from(["id", "data", "name", "type", "traceparent", "a", "a\x00", "\udc00"]),
    hostile_strings,
)
hostile_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        hostile_integers,
        st.floats(),  # NaN and infinities are written as the non-JSON NaN / Infinity
        hostile_strings,
        st.integers(1, 3000).map(Deep),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(st.tuples(member_names, children), max_size=4).map(Members),
    ),
    max_leaves=10,
)


def _objects(tree: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """The paths (indexes of members and items) of every object in ``tree``."""
    found: list[tuple[int, ...]] = []
    if isinstance(tree, Members):
        found.append(path)
        for i, (_, v) in enumerate(tree):
            found += _objects(v, (*path, i))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += _objects(v, (*path, i))
    return found


def _at(tree: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        tree = tree[i][1] if isinstance(tree, Members) else tree[i]
    return tree


def _valid_events() -> list[dict[str, Any]]:
    """One valid event of each core type (fixed ids), one with extension attributes."""
    subject = SUBJECTS[0]
    with_extensions = applied(subject, id="h-ext")
    with_extensions.update(traceparent="00-4bf92f3577b34da6-00f067aa0ba902b7-01", partitionkey=7)
    return [
        applied(subject, id="h-applied"),
        with_extensions,
        admitted(subject, id="h-admitted"),
        deposit_paid(subject, id="h-paid"),
        deposit_deducted(subject, id="h-deducted"),
        violation(subject, id="h-violation"),
        exited(subject, id="h-exited"),
        expelled(subject, readmission={"until": "2027-01-01"}, id="h-expelled"),
        declined(subject, id="h-declined"),
    ]


VALID_EVENTS = _valid_events()


@st.composite
def json_rule_records(draw: st.DrawFn) -> bytes:
    """A valid event with 0-3 edits, each anywhere in it: a member's value replaced by any
    JSON value, a member added (maybe under a name it already has) or one removed; then
    written in ASCII or raw, compact or spaced, now and then UTF-16 or after a BOM."""
    tree = as_members(draw(st.sampled_from(VALID_EVENTS)))
    for _ in range(draw(st.integers(0, 3))):
        objects = _objects(tree)
        target: Members = _at(tree, draw(st.sampled_from(objects)))
        action = draw(st.sampled_from(["replace", "replace", "add", "repeat", "remove"]))
        if action == "replace" and target:
            i = draw(st.integers(0, len(target) - 1))
            target[i] = (target[i][0], draw(hostile_values))
        elif action == "repeat" and target:
            name = draw(st.sampled_from([k for k, _ in target]))
            target.append((name, draw(hostile_values)))
        elif action == "remove" and target:
            del target[draw(st.integers(0, len(target) - 1))]
        else:
            target.append((draw(member_names), draw(hostile_values)))
    raw = json_text(tree, ascii_only=draw(st.booleans()), spaced=draw(st.booleans()))
    wrapping = draw(st.sampled_from(["none"] * 8 + ["bom", "utf-16", "cut"]))
    if wrapping == "bom":
        return b"\xef\xbb\xbf" + raw
    if wrapping == "utf-16":
        return raw.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    if wrapping == "cut":
        return raw[: draw(st.integers(0, len(raw)))]
    return raw


def _time(d: date, hour: int, utc: bool) -> str:
    return (
        f"{d.isoformat()}T{hour:02d}:30:00Z" if utc else f"{d.isoformat()}T{hour:02d}:30:00+08:00"
    )


@st.composite
def events_for(draw: st.DrawFn, subject: str, when: str) -> list[dict[str, Any] | bytes]:
    """One random event, or an onboarding (Applied, Admitted, full deposit) at once."""
    kind = draw(
        st.sampled_from(
            [
                "onboard",
                "onboard",
                "Applied",
                "Applied",
                "Admitted",
                "DepositPaid",
                "DepositDeducted",
                "ViolationRecorded",
                "Exited",
                "Exited",
                "Expelled",
                "Expelled",
                "ApplicationDeclined",
                "ReadmissionDecided",
                "review",
                "malformed",
            ]
        )
    )
    if kind == "onboard":
        return [applied(subject, when), admitted(subject, when), deposit_paid(subject, when)]
    if kind == "Applied":
        return [applied(subject, when, **draw(applications))]
    if kind == "Admitted":
        return [admitted(subject, when)]
    if kind == "DepositPaid":
        return [deposit_paid(subject, when, draw(amounts))]
    if kind == "DepositDeducted":
        return [deposit_deducted(subject, when, draw(amounts))]
    if kind == "ViolationRecorded":
        return [violation(subject, when, draw(st.sampled_from(ARTICLE_2)))]
    if kind == "Exited":
        flags = draw(st.sampled_from([(True, True)] * 3 + [(False, True), (True, False)]))
        return [exited(subject, when, settled=flags[0], fulfilled=flags[1])]
    if kind == "Expelled":
        ground = draw(st.sampled_from(EXPULSION_GROUNDS))
        return [expelled(subject, when, ground, readmission=draw(readmissions))]
    if kind == "ApplicationDeclined":
        return [declined(subject, when)]
    if kind == "ReadmissionDecided":
        return [readmission_decided(subject, when, draw(decisions))]
    if kind == "review":
        # An expulsion without a restriction (manual review, A1.4), an application during
        # it, the platform's decision, and an application after it.
        ground = draw(st.sampled_from(["A1.2.2-4", "A3-2"]))
        return [
            applied(subject, when),
            admitted(subject, when),
            expelled(subject, when, ground),
            applied(subject, when),
            readmission_decided(subject, when, draw(decisions)),
            applied(subject, when),
        ]
    broken = applied(subject, when)
    broken["data"]["registered_capital_fen"] = -1
    return [draw(st.sampled_from([b"{not json", b"[]", line(broken)]))]


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Random streams; in half of them business dates rise with the stream order."""
    subjects = SUBJECTS[: draw(st.integers(1, 3))]
    size = draw(st.integers(1, 20))
    dates = draw(st.lists(days, min_size=size, max_size=size))
    if draw(st.booleans()):
        dates.sort()
    out: list[dict[str, Any] | bytes] = []
    for d in dates:
        if out and draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from(out)))  # a re-sent record: same id
            continue
        subject = draw(st.sampled_from(subjects))
        when = _time(d, draw(st.integers(0, 23)), draw(st.booleans()))
        out += draw(events_for(subject, when))
    return [line(e) for e in out]


SOURCES = ["/taobao-live/provider-admin", "/taobao-live/risk-control"]


@st.composite
def colliding_streams(draw: st.DrawFn) -> list[bytes]:
    """Random streams whose (source, id) collide within and across providers and sources:
    ids from a pool of four, two sources (CONTRACT.md 1.1: the key is the pair)."""
    subjects = SUBJECTS[: draw(st.integers(1, 3))]
    size = draw(st.integers(1, 16))
    dates = sorted(draw(st.lists(days, min_size=size, max_size=size)))
    out: list[dict[str, Any] | bytes] = []
    for d in dates:
        subject = draw(st.sampled_from(subjects))
        when = _time(d, draw(st.integers(0, 23)), draw(st.booleans()))
        for event in draw(events_for(subject, when)):
            if isinstance(event, dict) and draw(st.integers(0, 3)) > 0:
                event["id"] = draw(st.sampled_from(["k1", "k2", "k3", "k4"]))
                event["source"] = draw(st.sampled_from(SOURCES))
            out.append(event)
    return [line(e) for e in out]


# --- hostile records: anything a producer could put on the inbound topic ----------------------

_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
hostile_text = st.one_of(
    st.text(max_size=12),
    st.lists(
        st.one_of(st.characters(), _SURROGATES, st.just("\x00"), st.just("\ufeff")), max_size=8
    ).map("".join),
    st.sampled_from(["", " ", "\x00", "\udc00", "\ud800x", "9999-12-31", "0001-01-01T00:00:00Z"]),
    st.integers(1000, 20_000).map(lambda n: "长" * n),
)
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(2**53, 2**80),
    st.integers(-(2**80), -(2**53)),
    st.floats(),
    hostile_text,
)
#: JSON values of every type, nested, with lone surrogates, U+0000 and huge numbers.
hostile_json = st.recursive(
    hostile_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


def _encoded(draw: st.DrawFn, value: Any) -> bytes:
    """``value`` as a record: ASCII escapes or raw text (raw lone surrogates are not
    UTF-8), sometimes with a byte-order mark or in UTF-16."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16"]))
    return text.encode(encoding, "surrogatepass")


def _deep(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


@st.composite
def hostile_envelopes(draw: st.DrawFn) -> bytes:
    """A valid envelope with one field, top-level or in ``data``, replaced or added."""
    subject = draw(st.sampled_from(SUBJECTS))
    builder = draw(
        st.sampled_from(
            [
                applied,
                admitted,
                deposit_paid,
                violation,
                exited,
                expelled,
                declined,
                deposit_deducted,
            ]
        )
    )
    event: dict[str, Any] = builder(subject, "2026-01-01")
    for _ in range(draw(st.integers(1, 3))):
        data = event.get("data")
        target = data if isinstance(data, dict) and draw(st.booleans()) else event
        names = sorted({*target, "extra", "id", "time", "subject", "source", "data"})
        target[draw(st.sampled_from(names))] = draw(hostile_json)
    if draw(st.integers(0, 4)) == 0:
        event["data"] = json.loads(_deep(draw(st.integers(50, 400)), "dict"))
    return _encoded(draw, event)


#: One inbound record: arbitrary bytes, arbitrary JSON, deep nesting, or a valid envelope
#: with a hostile field.
hostile_records = st.one_of(
    st.binary(max_size=64),
    hostile_json.flatmap(lambda v: st.composite(lambda draw: _encoded(draw, v))()),
    st.builds(
        lambda depth, kind: _deep(depth, kind).encode(),
        st.integers(1, 200_000),
        st.sampled_from(["list", "dict"]),
    ),
    hostile_envelopes(),
)
