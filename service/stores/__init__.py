"""Event store adapters: the library's recorders, extended for Kafka positions.

``ProviderLifecycle.process`` saves a batch's events together with the position of
every Kafka partition in the batch (``positions=[Position(name, first, last)]``).
These recorders write them in the same transaction as the events, and refuse the
batch (``IntegrityError``, rolled back) unless each partition's batch starts right
after its stored position: a zombie or a stale fetch can never apply a record twice.

In the same transaction again, every event gets its link in the hash chain
(``projections/audit_chain.py``; verified and sealed by ``projections/audit.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from eventsourcing.persistence import IntegrityError

from lifecycle.application import Position
from projections.audit_chain import Head, Link


def check_contiguous(position: Position, stored: int | None) -> None:
    """The batch must continue the stored position (first == stored + 1)."""
    if stored is not None and position.first != stored + 1:
        raise IntegrityError(
            f"{position.name}: batch starts at {position.first} but the store is at {stored}"
        )


def advance_positions(
    positions: Sequence[Position],
    read: Callable[[str], int | None],
    write: Callable[[str, int, bool], None],
) -> None:
    for position in positions:
        stored = read(position.name)
        check_contiguous(position, stored)
        write(position.name, position.last, stored is None)


def positions_of(kwargs: dict[str, Any]) -> Sequence[Position]:
    positions: Sequence[Position] = kwargs.get("positions") or ()
    return positions


class HeadCache:
    """The last link this process committed for each stream (bounded: least recently written
    streams are forgotten first).

    A link is immutable once committed (the chain's key is the stream and version), so a
    cached link of exactly ``version - 1`` is the one to chain to; anything else is looked
    up in the store. Updated only after a commit, so a rolled-back batch leaves no trace.
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._heads: dict[Any, Head] = {}  # in order of last write
        self._lock = threading.Lock()
        self._pending = threading.local()

    def split(
        self, keys: Sequence[tuple[Any, int]]
    ) -> tuple[dict[Any, Head], list[tuple[Any, int]]]:
        """The cached heads among ``keys`` (stream, version) and the keys to look up."""
        hits: dict[Any, Head] = {}
        misses: list[tuple[Any, int]] = []
        get = self._heads.get
        with self._lock:
            for oid, version in keys:
                head = get(oid)
                if head is not None and head.version == version:
                    hits[oid] = head
                else:
                    misses.append((oid, version))
        return hits, misses

    def stage(self, links: Sequence[Link]) -> None:
        """The links of the transaction in progress (in this thread)."""
        self._pending.links = links

    def discard(self) -> None:
        self._pending.links = ()

    def commit(self) -> None:
        """The staged transaction committed: remember its streams' new heads."""
        links: Sequence[Link] = getattr(self._pending, "links", ())
        self._pending.links = ()
        heads = self._heads
        with self._lock:
            for link in links:
                heads.pop(link.originator_id, None)
                heads[link.originator_id] = Head(link.originator_version, link.hash, link.subject)
            excess = len(heads) - self.size
            if excess > 0:
                for oid in list(islice(heads, excess + self.size // 10)):
                    del heads[oid]
