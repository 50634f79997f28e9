"""PostgreSQL's binary COPY format for the events and their chain links, written directly."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from store.chain import Link

# PostgreSQL's binary COPY format, written directly (psycopg's per-value dumpers cost more
# than the rest of the recorder): a signature, then per row the number of fields and each
# field as a 4-byte length and its binary form (uuid: 16 bytes, int8: 8 bytes big-endian,
# text: UTF-8, bytea: as is; NULL: length -1), then a trailer.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_TRAILER = b"\xff\xff"
_EVENT_ROW = struct.Struct("!hi16siqi")  # 4 fields: uuid, int8, then the topic's length
_LEN = struct.Struct("!i")
_LINK_ROW = struct.Struct("!hi16siqiq")  # 6 fields: uuid, int8, int8, then the subject
_HASHES = struct.Struct("!i32si32s")
_NULL = _LEN.pack(-1)


def events_copy_data(stored_events: Sequence[StoredEvent]) -> bytes:
    parts = [_SIGNATURE]
    for e in stored_events:
        topic = e.topic.encode()
        oid = e.originator_id
        parts.append(
            _EVENT_ROW.pack(
                4,
                16,
                oid.bytes if isinstance(oid, UUID) else UUID(oid).bytes,
                8,
                e.originator_version,
                len(topic),
            )
        )
        parts += (topic, _LEN.pack(len(e.state)), e.state)
    parts.append(_TRAILER)
    return b"".join(parts)


def links_copy_data(links: Sequence[Link], ids: Sequence[int] | None = None) -> bytes:
    """The links as COPY data; ``ids``, when given, replace their notification ids."""
    parts = [_SIGNATURE]
    for link, nid in zip(links, ids or [link.notification_id for link in links], strict=True):
        oid = link.originator_id
        parts.append(
            _LINK_ROW.pack(
                6,
                16,
                oid.bytes if isinstance(oid, UUID) else UUID(oid).bytes,
                8,
                link.originator_version,
                8,
                nid,
            )
        )
        if link.subject is None:
            parts.append(_NULL)
        else:
            subject = link.subject.encode()
            parts += (_LEN.pack(len(subject)), subject)
        parts.append(_HASHES.pack(32, link.prev_hash, 32, link.hash))
    parts.append(_TRAILER)
    return b"".join(parts)


#: The chain's subject index holds this many leading characters of a subject, never the whole
#: (a B-tree row holds at most ~2.7 kB, and a malformed record's subject may be any length);
#: ``subject_streams`` compares the full subject on the rows the index finds.
SUBJECT_KEY_CHARS = 64

#: Marks a subject column value that holds the subject's UTF-8 bytes in hex: PostgreSQL
#: ``text`` cannot hold U+0000 (nor a lone surrogate), which an inbound record's subject may.
_HEX_MARK = "\x01"


def column_subject(subject: str | None) -> str | None:
    """A subject as the chain's ``subject`` column holds it (reversibly: :func:`chain_subject`).

    A subject with U+0000, a lone surrogate or starting with U+0001 is written as U+0001
    followed by the hex of its UTF-8 bytes (surrogates passed through); any other as it is.
    """
    if subject is None:
        return None
    if "\x00" not in subject and not subject.startswith(_HEX_MARK):
        if subject.isascii():
            return subject
        try:
            subject.encode()
            return subject
        except UnicodeEncodeError:
            pass
    return _HEX_MARK + subject.encode("utf-8", "surrogatepass").hex()


def chain_subject(stored: str | None) -> str | None:
    """The subject a ``subject`` column value stands for (the inverse of :func:`column_subject`)."""
    if stored is None or not stored.startswith(_HEX_MARK):
        return stored
    return bytes.fromhex(stored[1:]).decode("utf-8", "surrogatepass")
