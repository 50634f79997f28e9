"""What the relay sends: the outbound CloudEvent, the refused record and the dead letter.

Pure functions of what the store holds (no Kafka here): ``consumers/relay.py`` publishes them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from lifecycle.contract import APPLIED_V2_SCHEMA
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord

SERVICE_SOURCE = "/taobao-live/provider-lifecycle-service"

#: The Kafka header of every CloudEvent the service publishes (structured mode).
CONTENT_TYPE = ("content-type", b"application/cloudevents+json; charset=UTF-8")

#: ``x-error`` holds at most this many bytes of UTF-8 (CONTRACT.md, dead letters).
X_ERROR_MAX_BYTES = 1024
_ELLIPSIS = "…".encode()

#: The most of a set-aside reason kept in the store.
REASON_MAX_CHARS = 1000


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    notification_id: int = 0

    @property
    def size(self) -> int:
        """An upper bound of its size as Kafka counts it (a record batch of one)."""
        size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            self.key, self.value, self.headers
        )
        return size


def iso(value: Any) -> str:
    return str(value.isoformat())


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bounded_header(text: str, limit: int = X_ERROR_MAX_BYTES) -> bytes:
    """``text`` as UTF-8 in at most ``limit`` bytes: a longer one is cut on a character
    boundary and ends with ``…``."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    # Valid UTF-8 cut anywhere: ``ignore`` drops only the last, partial character.
    head = data[: limit - len(_ELLIPSIS)].decode("utf-8", "ignore").encode()
    return head + _ELLIPSIS


def event_extensions(event: Provider.Event) -> dict[str, Any]:
    """The inbound CloudEvents extension attributes kept with the event (``{}`` for events
    stored before 1.1): ``Provider.Event.extensions``, read here the same way."""
    extensions = getattr(type(event), "extensions", None)
    if isinstance(extensions, property):
        value = event.extensions  # type: ignore[attr-defined,unused-ignore]
    else:
        value = event.__dict__.get("ce_extensions") or {}
    return dict(value) if isinstance(value, Mapping) else {}


def outbound_event(event: Provider.Event, uscc: str) -> dict[str, Any]:
    """The CONTRACT.md outbound CloudEvent: the inbound one (with its extension attributes)
    plus sequence and recordedtime.

    ``data`` is published as it was received; a later payload version says so in
    ``dataschema`` (an event stored before versions existed is v1, without one).
    """
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.ce_id,
        "source": event.ce_source,
        "type": event.WIRE_TYPE,
        "subject": uscc,
        "time": iso(event.timestamp),
        "datacontenttype": "application/json",
    }
    if isinstance(event, Provider.ApplicationEvent) and event.payload_version == 2:
        out["dataschema"] = APPLIED_V2_SCHEMA
    for name, value in event_extensions(event).items():
        # An extension never replaces an attribute of the envelope or of the service.
        if name not in out and name not in ("sequence", "recordedtime", "data"):
            out[name] = value
    out["sequence"] = event.originator_version
    out["recordedtime"] = iso(event.recorded_at)
    out["data"] = event.data
    return out


def refused_event(record: InboundRecord.Received) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"refused:{record.position}",
        "source": SERVICE_SOURCE,
        "type": "provider.Refused",
        "subject": record.subject,
        "time": iso(record.recorded_at),
        "datacontenttype": "application/json",
        "data": {"event": record.event, "codes": record.codes, "reason": record.reason},
    }


def dead_letter(record: InboundRecord.Received, dlq_topic: str) -> Outgoing:
    """The original bytes and key, unchanged, with the reason (at most 1 KiB) and origin as
    headers."""
    _, topic, partition, offset = record.position.rsplit(":", 3)
    return Outgoing(
        dlq_topic,
        base64.b64decode(record.key_b64) if record.key_b64 is not None else None,
        base64.b64decode(record.raw_b64),
        [
            ("x-error", bounded_header(record.reason or "")),
            ("x-original-topic", topic.encode()),
            ("x-original-partition", partition.encode()),
            ("x-original-offset", offset.encode()),
        ],
    )


def json_bytes(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
