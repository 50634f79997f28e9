"""The hash chain and the seals: pure functions, no I/O (shared by the recorders and ``audit``).

Every stored event (one row of the events table, whatever its aggregate) gets a *link*
in a side table written in the same transaction::

    hash = SHA-256( "provider-lifecycle/chain/v1" ‖ originator_id ‖ originator_version
                    ‖ topic ‖ state ‖ prev_hash )

each field length-prefixed (8-byte big-endian length, then the bytes): the originator id as
its 16 bytes (a text id in UTF-8), the version as 8 bytes big-endian (signed),
the topic in UTF-8, the state exactly as stored (never a decoded or upcast form), and
``prev_hash`` the hash of the stream's previous event (32 zero bytes for version 1).

A *seal* commits to every stream's head at once: the Merkle root (RFC 6962 tree hash, leaves
in originator-id order) over ``(originator_id, head version, head hash)`` of every stream whose
events have notification ids ≤ ``max_notification_id``. Seals chain too (each one hashes the
previous seal's hash), and are exported as JSON lines to be kept off-system.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol
from uuid import UUID

HASH_SIZE: Final = 32
#: ``prev_hash`` of a stream's first event.
GENESIS: Final = bytes(HASH_SIZE)
#: ``prev_hash`` written when the predecessor's link could not be found (it was removed):
#: the new event is still recorded, and ``verify`` reports the stream from that point.
MISSING: Final = b"\xff" * HASH_SIZE

CHAIN_TAG: Final = b"provider-lifecycle/chain/v1"
LEAF_TAG: Final = b"\x00"
NODE_TAG: Final = b"\x01"
SEAL_TAG: Final = b"provider-lifecycle/seal/v1"


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(8, "big") + value


def canonical_id(originator_id: UUID | str) -> str:
    """The originator id as shown: ``str(UUID)`` (SQLite stores it as hex)."""
    if isinstance(originator_id, UUID):
        return str(originator_id)
    try:
        return str(UUID(originator_id))
    except ValueError:
        return originator_id


def id_bytes(originator_id: UUID | str) -> bytes:
    """The originator id as hashed: a UUID's 16 bytes (a text id in UTF-8)."""
    if isinstance(originator_id, UUID):
        return originator_id.bytes
    try:
        return UUID(originator_id).bytes
    except ValueError:
        return originator_id.encode()


def event_hash(
    originator_id: UUID | str, version: int, topic: str, state: bytes, prev_hash: bytes
) -> bytes:
    """SHA-256 over the length-prefixed canonical encoding of one stored event."""
    oid = id_bytes(originator_id)
    text = topic.encode()
    return hashlib.sha256(
        b"".join(
            (
                CHAIN_TAG,
                len(oid).to_bytes(8, "big"),
                oid,
                _EIGHT,
                version.to_bytes(8, "big", signed=True),
                len(text).to_bytes(8, "big"),
                text,
                len(state).to_bytes(8, "big"),
                state,
                len(prev_hash).to_bytes(8, "big"),
                prev_hash,
            )
        )
    ).digest()


_EIGHT: Final = (8).to_bytes(8, "big")


# --- links written by the recorders -----------------------------------------------------


class StoredLike(Protocol):
    """What the recorders hand over: the library's ``StoredEvent``."""

    @property
    def originator_id(self) -> UUID | str: ...

    @property
    def originator_version(self) -> int: ...

    @property
    def topic(self) -> str: ...

    @property
    def state(self) -> bytes: ...


class Head(NamedTuple):
    """A stream's last link: what the next event chains to."""

    version: int
    hash: bytes
    subject: str | None


class Link(NamedTuple):
    """One row of the chain table."""

    originator_id: UUID | str
    originator_version: int
    notification_id: int
    subject: str | None
    prev_hash: bytes
    hash: bytes


def stream_subject(state: bytes) -> str | None:
    """Whose stream this is, read from its first event: ``uscc`` (a provider's ``Applied``)
    or ``subject`` (an inbound record). ``None`` when absent or not readable."""
    try:
        obj = json.loads(state)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    for key in ("uscc", "subject"):
        value = obj.get(key)
        if isinstance(value, str):
            return value
    return None


def predecessors(stored_events: Sequence[StoredLike]) -> list[tuple[UUID | str, int]]:
    """The (stream, version) whose link each stream of a batch continues (none for new ones)."""
    first: dict[UUID | str, int] = {}
    for s in stored_events:
        v = first.get(s.originator_id)
        if v is None or s.originator_version < v:
            first[s.originator_id] = s.originator_version
    return [(oid, v - 1) for oid, v in first.items() if v > 1]


def chain_batch(
    stored_events: Sequence[StoredLike], heads: Mapping[UUID | str, Head]
) -> list[Link]:
    """The links of a batch, in order, given the previous heads of its streams.

    ``heads`` maps a stream to its stored link at ``version - 1`` of the batch's first event
    of that stream (see :func:`predecessors`); a stream without one starts at ``GENESIS``
    when the event is version 1, and at ``MISSING`` otherwise. The notification ids are not
    hashed: they are left 0 here (this may run while the events are being written) and set
    by :func:`with_ids`. Same hash as :func:`event_hash`, inlined (it runs for every event
    the service records).
    """
    current: dict[UUID | str, tuple[int, bytes, str | None]] = {
        oid: (h.version, h.hash, h.subject) for oid, h in heads.items()
    }
    topics: dict[str, bytes] = {}
    sha256 = hashlib.sha256
    links: list[Link] = []
    append = links.append
    for s in stored_events:
        oid, version, state = s.originator_id, s.originator_version, s.state
        if version == 1:
            prev, subject = GENESIS, stream_subject(state)
        else:
            head = current.get(oid)
            if head is not None and head[0] == version - 1:
                prev, subject = head[1], head[2]
            else:
                prev, subject = MISSING, head[2] if head is not None else None
        topic = topics.get(s.topic)
        if topic is None:
            encoded = s.topic.encode()
            topic = topics[s.topic] = len(encoded).to_bytes(8, "big") + encoded
        oid_bytes = oid.bytes if isinstance(oid, UUID) else id_bytes(oid)
        digest = sha256(
            b"".join(
                (
                    CHAIN_TAG,
                    len(oid_bytes).to_bytes(8, "big"),
                    oid_bytes,
                    _EIGHT,
                    version.to_bytes(8, "big", signed=True),
                    topic,
                    len(state).to_bytes(8, "big"),
                    state,
                    _THIRTY_TWO,
                    prev,
                )
            )
        ).digest()
        current[oid] = (version, digest, subject)
        append(Link(oid, version, 0, subject, prev, digest))
    return links


_THIRTY_TWO: Final = (HASH_SIZE).to_bytes(8, "big")


def with_ids(links: Sequence[Link], notification_ids: Sequence[int]) -> list[Link]:
    return [
        Link(
            link.originator_id,
            link.originator_version,
            nid,
            link.subject,
            link.prev_hash,
            link.hash,
        )
        for link, nid in zip(links, notification_ids, strict=True)
    ]


def link_batch(
    stored_events: Sequence[StoredLike],
    notification_ids: Sequence[int],
    heads: Mapping[UUID | str, Head],
) -> list[Link]:
    """The chain rows of a batch with their notification ids."""
    return with_ids(chain_batch(stored_events, heads), notification_ids)


# --- Merkle root (RFC 6962 tree hash) ----------------------------------------------------


def leaf_hash(originator_id: UUID | str, version: int, head_hash: bytes) -> bytes:
    h = hashlib.sha256(LEAF_TAG)
    h.update(_field(id_bytes(originator_id)))
    h.update(_field(version.to_bytes(8, "big", signed=True)))
    h.update(_field(bytes(head_hash)))
    return h.digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_TAG + left + right).digest()


class MerkleBuilder:
    """The RFC 6962 Merkle tree hash of leaves given one at a time (O(log n) memory)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.count = 0

    def add(self, leaf: bytes) -> None:
        self.count += 1
        size, node = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            _, left = self._stack.pop()
            size, node = size * 2, _node(left, node)
        self._stack.append((size, node))

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = _node(left, node)
        return node


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    builder = MerkleBuilder()
    for leaf in leaves:
        builder.add(leaf)
    return builder.root()


# --- seals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seal:
    """A commitment to every stream's head up to ``max_notification_id``."""

    seq: int
    sealed_at: str  # RFC 3339, UTC
    label: str  # e.g. the business day it seals
    max_notification_id: int
    streams: int
    events: int
    root: str  # hex
    prev: str  # hex: the previous seal's hash (zeros for the first)
    hash: str  # hex: over every field above

    def as_dict(self) -> dict[str, Any]:
        return {
            "seal": self.seq,
            "sealed_at": self.sealed_at,
            "label": self.label,
            "max_notification_id": self.max_notification_id,
            "streams": self.streams,
            "events": self.events,
            "root": self.root,
            "prev": self.prev,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Seal:
        return cls(
            int(d["seal"]),
            str(d["sealed_at"]),
            str(d["label"]),
            int(d["max_notification_id"]),
            int(d["streams"]),
            int(d["events"]),
            str(d["root"]),
            str(d["prev"]),
            str(d["hash"]),
        )

    def expected_hash(self) -> str:
        return seal_hash(
            self.seq,
            self.sealed_at,
            self.label,
            self.max_notification_id,
            self.streams,
            self.events,
            self.root,
            self.prev,
        )


def seal_hash(
    seq: int,
    sealed_at: str,
    label: str,
    max_notification_id: int,
    streams: int,
    events: int,
    root: str,
    prev: str,
) -> str:
    h = hashlib.sha256(SEAL_TAG)
    for number in (seq, max_notification_id, streams, events):
        h.update(_field(number.to_bytes(8, "big", signed=True)))
    for text in (sealed_at, label, root, prev):
        h.update(_field(text.encode()))
    return h.hexdigest()


def make_seal(
    previous: Seal | None,
    sealed_at: str,
    label: str,
    max_notification_id: int,
    streams: int,
    events: int,
    root: bytes,
) -> Seal:
    seq = previous.seq + 1 if previous else 1
    prev = previous.hash if previous else GENESIS.hex()
    args = (seq, sealed_at, label, max_notification_id, streams, events, root.hex(), prev)
    return Seal(*args, seal_hash(*args))
