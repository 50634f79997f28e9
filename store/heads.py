"""The last committed link of each stream, so a batch chains to it without a query."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from itertools import islice
from typing import Any

from store.chain import Head, Link


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
