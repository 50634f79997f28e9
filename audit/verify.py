"""Tamper evidence: verify the hash chain and the seals.

``verify`` walks every stream of the store (or one provider's streams) in one snapshot,
recomputes each event's hash from what is stored and compares it with the chain, and
names the **first broken event of each stream**:

================================  =============================================================
what was done in the database     how it shows
================================  =============================================================
a byte of an event changed        its hash no longer matches (``changed``)
(state, topic, version …)
an event deleted                  the chain holds a link without its event, or the stream's
                                  versions jump (``deleted``)
two events swapped                each holds the content the other was hashed with (``swapped``)
an event inserted                 no link for it (``inserted``), or a link that does not chain
                                  to its predecessor (``forged``)
the tail of a stream, or a whole  the seals: their Merkle root over every stream's head no
stream, removed with its links    longer matches (``seal``)
================================  =============================================================

The chain is unkeyed (anyone with write access can recompute it), so the seals, exported
and kept off-system (``lifecycle audit seal --export``), are the anchor: ``verify --seals
FILE`` checks the store against such a copy. A seal only certifies a store that verifies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from eventsourcing.utils import get_topic

from lifecycle.provider import Provider
from lifecycle.records import InboundRecord
from lifecycle.uscc import provider_id
from store.audit_port import AuditReader, AuditStore, StoredRow, id_order
from store.chain import (
    GENESIS,
    MISSING,
    Link,
    MerkleBuilder,
    Seal,
    canonical_id,
    event_hash,
    leaf_hash,
    stream_subject,
)

log = logging.getLogger(__name__)

PROVIDER_TOPICS = get_topic(Provider) + "."
RECORD_TOPICS = get_topic(InboundRecord) + "."

Kind = Literal["provider", "record", "stream", "seal"]


@dataclass(frozen=True)
class Broken:
    """The first broken event of a stream (or a seal that no longer matches)."""

    uscc: str | None  # the provider's USCC; a record's subject, else its record id
    sequence: int | None  # the stream position (originator version) of the broken event
    reason: str
    kind: Kind = "stream"
    stream: str | None = None  # the originator id

    def as_dict(self) -> dict[str, Any]:
        return {
            "uscc": self.uscc,
            "sequence": self.sequence,
            "reason": self.reason,
            "kind": self.kind,
            "stream": self.stream,
        }


@dataclass
class Report:
    checked: int = 0  # events read and checked
    streams: int = 0
    seals: int = 0  # seals checked against the store
    broken: list[Broken] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "streams": self.streams,
            "seals": self.seals,
            "broken": [b.as_dict() for b in self.broken],
        }


# --- walking the store stream by stream ---------------------------------------------------


@dataclass(frozen=True)
class Stream:
    originator_id: UUID | str
    events: list[StoredRow]
    links: list[Link]


def streams(reader: AuditReader, ids: Sequence[UUID] | None = None) -> Iterator[Stream]:
    """Every stream with its rows from both tables, in originator-id order (a merge)."""

    def grouped(rows: Iterable[Any]) -> Iterator[tuple[Any, list[Any]]]:
        for _, group in groupby(rows, key=lambda r: id_order(r.originator_id)):
            items = list(group)
            yield items[0].originator_id, items

    events = grouped(reader.events(ids))
    links = grouped(reader.links(ids))
    e = next(events, None)
    c = next(links, None)
    while e is not None or c is not None:
        if c is None or (e is not None and id_order(e[0]) < id_order(c[0])):
            assert e is not None
            yield Stream(e[0], e[1], [])
            e = next(events, None)
        elif e is None or id_order(c[0]) < id_order(e[0]):
            yield Stream(c[0], [], c[1])
            c = next(links, None)
        else:
            yield Stream(e[0], e[1], c[1])
            e, c = next(events, None), next(links, None)


def stream_kind(stream: Stream) -> Kind:
    topic = stream.events[0].topic if stream.events else ""
    if topic.startswith(PROVIDER_TOPICS):
        return "provider"
    if topic.startswith(RECORD_TOPICS):
        return "record"
    return "stream"


def stream_name(stream: Stream) -> str:
    """The USCC of a provider stream (chain or first event), a record's subject or its id."""
    for link in stream.links:
        if link.subject:
            return link.subject
    first = next((e for e in stream.events if e.originator_version == 1), None)
    subject = stream_subject(first.state) if first is not None else None
    return subject or canonical_id(stream.originator_id)


def check_stream(stream: Stream) -> tuple[int, str] | None:
    """The first broken event of a stream: (sequence, reason), or ``None`` when intact."""
    oid = stream.originator_id
    events = {e.originator_version: e for e in stream.events}
    links = {link.originator_version: link for link in stream.links}
    expected_prev = GENESIS
    expected_version = 1
    for v in sorted(events.keys() | links.keys()):
        if v != expected_version:
            return expected_version, (
                f"deleted: event {expected_version} is missing "
                f"(the stream goes from {expected_version - 1} to {v})"
            )
        event, link = events.get(v), links.get(v)
        if event is None:
            return v, "deleted: the chain holds this event but the events table does not"
        if link is None:
            return v, "inserted: the event has no link in the hash chain"
        if link.prev_hash == MISSING:
            return v, "recorded after the link of its predecessor had been removed"
        if link.prev_hash != expected_prev:
            what = "the stream's start" if v == 1 else f"event {v - 1}"
            return v, f"forged: its link does not chain to {what}"
        digest = event_hash(oid, v, event.topic, event.state, link.prev_hash)
        if digest != link.hash:
            for w, other in links.items():
                if w != v and other.hash == event_hash(
                    oid, w, event.topic, event.state, other.prev_hash
                ):
                    return v, f"swapped: it holds the content recorded as event {w}"
            return v, "changed: its stored bytes (topic or state) do not match its hash"
        if link.notification_id != event.notification_id:
            return v, (
                f"moved: notification id {event.notification_id}, "
                f"recorded as {link.notification_id}"
            )
        if v == 1:
            named = stream_subject(event.state)
            if named != link.subject:
                return v, f"index altered: the chain names {link.subject!r}, the event {named!r}"
        expected_prev = digest
        expected_version = v + 1
    return None


def broken_at(stream: Stream, problem: tuple[int, str]) -> Broken:
    return Broken(
        stream_name(stream),
        problem[0],
        problem[1],
        stream_kind(stream),
        canonical_id(stream.originator_id),
    )


# --- seals ------------------------------------------------------------------------------


class SealCheck:
    """Recomputes one seal's root from the stream heads it covers, stream by stream."""

    def __init__(self, seal: Seal, source: str) -> None:
        self.seal = seal
        self.source = source  # "store" or the exported file
        self.merkle = MerkleBuilder()
        self.events = 0

    def add(self, stream: Stream) -> None:
        head: Link | None = None
        for link in stream.links:  # in version order
            if link.notification_id <= self.seal.max_notification_id:
                head = link
                self.events += 1
        if head is not None:
            self.merkle.add(leaf_hash(stream.originator_id, head.originator_version, head.hash))

    def problem(self) -> str | None:
        root = self.merkle.root().hex()
        if (root, self.merkle.count, self.events) == (
            self.seal.root,
            self.seal.streams,
            self.seal.events,
        ):
            return None
        s = self.seal
        return (
            f"seal {s.seq} ({s.label}, up to notification {s.max_notification_id}, from the "
            f"{self.source}) no longer matches: root {root[:16]}… ≠ sealed {s.root[:16]}…; "
            f"{self.merkle.count} streams (sealed {s.streams}), {self.events} events "
            f"(sealed {s.events})"
        )


def _seal_problems(stored: Sequence[Seal], exported: Sequence[Seal] | None) -> list[str]:
    """The seals' own chain, and the store's seals against an off-system copy."""
    problems: list[str] = []
    previous: Seal | None = None
    for seal in stored:
        if seal.hash != seal.expected_hash():
            problems.append(f"seal {seal.seq} was altered: its hash does not match its fields")
        expected_seq = previous.seq + 1 if previous else 1
        if seal.seq != expected_seq:
            problems.append(f"seal {expected_seq} is missing from the store")
        elif seal.prev != (previous.hash if previous else GENESIS.hex()):
            problems.append(f"seal {seal.seq} does not chain to seal {seal.seq - 1}")
        previous = seal
    if exported is not None:
        by_seq = {s.seq: s for s in stored}
        for copy in exported:
            if copy.hash != copy.expected_hash():
                problems.append(f"seal {copy.seq} in the exported file was altered")
            mine = by_seq.get(copy.seq)
            if mine is None:
                problems.append(f"seal {copy.seq} of the exported file is missing from the store")
            elif mine != copy:
                problems.append(f"seal {copy.seq} differs from the exported copy")
    return problems


def add_seal_problems(
    report: Report,
    stored: Sequence[Seal],
    exported: Sequence[Seal] | None,
    checks: Sequence[SealCheck],
) -> None:
    problems = _seal_problems(stored, exported)
    problems += [p for p in (check.problem() for check in checks) if p is not None]
    report.broken += [Broken(None, None, p, "seal") for p in problems]


def seals_to_check(stored: Sequence[Seal], exported: Sequence[Seal] | None) -> list[SealCheck]:
    """Each seal once; the off-system copy wins over the store's row."""
    chosen: dict[int, SealCheck] = {s.seq: SealCheck(s, "store") for s in stored}
    for copy in exported or ():
        chosen[copy.seq] = SealCheck(copy, "exported file")
    return [chosen[k] for k in sorted(chosen)]


def read_seals(path: Path) -> list[Seal]:
    """Seals exported by ``lifecycle audit seal --export`` (JSON lines)."""
    return [
        Seal.from_dict(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def write_seals(seals: Iterable[Seal], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for seal in seals:
            out.write(json.dumps(seal.as_dict(), sort_keys=True) + "\n")
            n += 1
    return n


# --- verify -----------------------------------------------------------------------------


def scan(
    reader: AuditReader,
    ids: Sequence[UUID] | None,
    checks: Sequence[SealCheck],
    report: Report,
    new_seal: SealCheck | None = None,
) -> None:
    for stream in streams(reader, ids):
        report.streams += 1
        report.checked += len(stream.events)
        for check in checks:
            check.add(stream)
        if new_seal is not None:
            new_seal.add(stream)
        problem = check_stream(stream)
        if problem is not None:
            report.broken.append(broken_at(stream, problem))


def verify(
    store: AuditStore, uscc: str | None = None, exported: Sequence[Seal] | None = None
) -> Report:
    """Check every stream (or only ``uscc``'s: its provider stream and inbound records).

    The seals are checked on a whole-store run only (they cover every stream).
    """
    report = Report()
    with store.audit_reader() as reader:
        if uscc is not None:
            ids = [provider_id(uscc), *reader.subject_streams(uscc)]
            scan(reader, list(dict.fromkeys(ids)), (), report)
            return report
        stored = reader.seals()
        checks = seals_to_check(stored, exported)
        scan(reader, None, checks, report)
    report.seals = len(checks)
    add_seal_problems(report, stored, exported, checks)
    return report
