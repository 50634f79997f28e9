"""The inbox's :class:`~lifecycle.inbox.Sender` on Kafka: the original bytes and key, again.

Each record carries the header ``x-resubmit-of`` (:data:`consumers.inbound.RESUBMIT_HEADER`)
naming the inbox record, so the consumer judges a refused id again instead of calling it
a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from consumers.inbound import RESUBMIT_HEADER
from consumers.producer import produce
from lifecycle.records import InboundRecord


@dataclass(frozen=True)
class KafkaSender:
    bootstrap: str
    topic: str

    def __call__(self, records: Sequence[InboundRecord], by: str) -> int:
        return asyncio.run(
            produce(
                self.bootstrap,
                self.topic,
                ((r.key, r.raw, [(RESUBMIT_HEADER, str(r.id).encode())]) for r in records),
            )
        )
