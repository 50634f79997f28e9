"""Input positions written with the events: the exactly-once check of every store.

``ProviderLifecycle.process`` saves a batch's events together with the position of
every Kafka partition in the batch (``positions=[Position(name, first, last)]``).
These recorders write them in the same transaction as the events, and refuse the
batch (``IntegrityError``, rolled back) unless each partition's batch starts right
after its stored position: a zombie or a stale fetch can never apply a record twice.

In the same transaction again, every event gets its link in the hash chain
(``store/chain.py``; verified and sealed by ``audit/verify.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError

from lifecycle.ports import Position


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
