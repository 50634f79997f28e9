"""Publishing records to Kafka from the CLI (``produce``, inbox re-submission)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer


def key_of(line: bytes) -> bytes | None:
    """The record key is the event's ``subject`` (no key when the line is not a JSON object)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    subject = obj.get("subject") if isinstance(obj, dict) else None
    return subject.encode() if isinstance(subject, str) else None


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
    on_sent: object = None,
) -> int:
    """Send (key, value, headers) records in order with an idempotent producer."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=10
    )
    await producer.start()
    sent = 0
    try:
        pending = []
        for key, value, headers in records:
            pending.append(await producer.send(topic, value, key=key, headers=headers or None))
            sent += 1
            if callable(on_sent):
                on_sent(1)
            if len(pending) >= 5000:
                for future in pending:
                    await future
                pending.clear()
        for future in pending:
            await future
    finally:
        await producer.stop()
    return sent
