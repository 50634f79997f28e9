"""The relay: the store's notification log → Kafka (outbound, refused, dead letters).

It follows the notification log from its own tracking position (``relay:<name>``),
publishes each page with an idempotent producer, waits for every acknowledgement and
only then stores the new position: at-least-once, in store order, no gaps across
restarts. Subscribers drop repeats by ``id`` or (``subject``, ``sequence``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from eventsourcing.persistence import Notification, Tracking

from consumers.metrics import RELAY_POSITION, RELAY_PUBLISHED
from lifecycle.application import ProviderLifecycle
from lifecycle.contract import APPLIED_V2_SCHEMA
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord

log = logging.getLogger(__name__)

SERVICE_SOURCE = "/taobao-live/provider-lifecycle-service"


@dataclass(frozen=True)
class RelayConfig:
    bootstrap: str
    outbound_topic: str
    refused_topic: str
    dlq_topic: str
    name: str = "relay:kafka"
    page: int = 1000
    idle_ms: int = 200


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def _iso(value: Any) -> str:
    return str(value.isoformat())


def outbound_event(event: Provider.Event, uscc: str) -> dict[str, Any]:
    """The CONTRACT.md outbound CloudEvent: the inbound one plus sequence and recordedtime.

    ``data`` is published as it was received; a later payload version says so in
    ``dataschema`` (an event stored before versions existed is v1, without one).
    """
    out = {
        "specversion": "1.0",
        "id": event.ce_id,
        "source": event.ce_source,
        "type": event.WIRE_TYPE,
        "subject": uscc,
        "time": _iso(event.timestamp),
        "datacontenttype": "application/json",
        "sequence": event.originator_version,
        "recordedtime": _iso(event.recorded_at),
        "data": event.data,
    }
    if isinstance(event, Provider.ApplicationEvent) and event.payload_version == 2:
        out["dataschema"] = APPLIED_V2_SCHEMA
    return out


def refused_event(record: InboundRecord.Received) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"refused:{record.position}",
        "source": SERVICE_SOURCE,
        "type": "provider.Refused",
        "subject": record.subject,
        "time": _iso(record.recorded_at),
        "datacontenttype": "application/json",
        "data": {"event": record.event, "codes": record.codes, "reason": record.reason},
    }


def dead_letter(record: InboundRecord.Received, dlq_topic: str) -> Outgoing:
    """The original bytes and key, unchanged, with the reason and origin as headers."""
    _, topic, partition, offset = record.position.rsplit(":", 3)
    return Outgoing(
        dlq_topic,
        base64.b64decode(record.key_b64) if record.key_b64 is not None else None,
        base64.b64decode(record.raw_b64),
        [
            ("x-error", (record.reason or "").encode()),
            ("x-original-topic", topic.encode()),
            ("x-original-partition", partition.encode()),
            ("x-original-offset", offset.encode()),
        ],
    )


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Relay:
    def __init__(self, app: ProviderLifecycle, config: RelayConfig) -> None:
        self.app = app
        self.config = config
        self._usccs: dict[Any, str] = {}

    def translate(self, notifications: Sequence[Notification]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            if isinstance(event, Provider.Event):
                uscc = self._uscc(event)
                out.append(
                    Outgoing(
                        self.config.outbound_topic,
                        uscc.encode(),
                        _json(outbound_event(event, uscc)),
                        [],
                    )
                )
            elif isinstance(event, InboundRecord.Received):
                if event.outcome == "refused":
                    out.append(
                        Outgoing(
                            self.config.refused_topic,
                            (event.subject or "").encode() or None,
                            _json(refused_event(event)),
                            [],
                        )
                    )
                elif event.outcome == "malformed" and event.position.startswith("kafka:"):
                    out.append(dead_letter(event, self.config.dlq_topic))
        return out

    def _uscc(self, event: Provider.Event) -> str:
        if isinstance(event, Provider.Applied):
            self._usccs[event.originator_id] = event.uscc
            return event.uscc
        uscc = self._usccs.get(event.originator_id)
        if uscc is None:
            provider = self.app.provider_by_id(event.originator_id)
            uscc = provider.uscc
            self._usccs[event.originator_id] = uscc
        return uscc

    def position(self) -> int:
        return self.app.position(self.config.name) or 0

    async def run(self, stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        await producer.start()
        try:
            position = await asyncio.to_thread(self.position)
            while not stop.is_set():
                notifications = await asyncio.to_thread(
                    self.app.process_recorder.select_notifications,
                    position + 1,
                    self.config.page,
                )
                if not notifications:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.config.idle_ms / 1000)
                    continue
                outgoing = await asyncio.to_thread(self.translate, notifications)
                futures = [
                    await producer.send(o.topic, o.value, key=o.key, headers=o.headers)
                    for o in outgoing
                ]
                await asyncio.gather(*futures)
                for o in outgoing:
                    RELAY_PUBLISHED.labels(o.topic).inc()
                position = notifications[-1].id
                await asyncio.to_thread(
                    self.app.process_recorder.insert_tracking,
                    Tracking(self.config.name, position),
                )
                RELAY_POSITION.set(position)
        finally:
            await producer.stop()
