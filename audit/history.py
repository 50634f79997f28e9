"""A provider's history for auditors, and the export of everything recorded.

``history``: every inbound record of one provider in store order — accepted (its events),
refused, duplicate, and malformed ones that carried its USCC as subject — with outcome,
clause codes, reason, business time, recorded time, stream sequence, source, CloudEvents id
and Kafka position, plus the hash-chain check of those streams.

``export_rows``: every recorded event and inbound record, in store order, for ``lifecycle
audit export``; personal data (an application's ``contact``, a record's original bytes) is
masked or left out unless asked for.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Literal

from eventsourcing.persistence import StoredEvent

from audit.verify import Report, broken_at, check_stream, streams
from lifecycle.application import ProviderLifecycle
from lifecycle.privacy import mask_contact
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord
from lifecycle.rules import business_date
from lifecycle.uscc import provider_id
from store.audit_port import AuditStore

Format = Literal["jsonl", "csv"]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _envelope_of(record: InboundRecord.Received) -> dict[str, Any]:
    """The inbound envelope as far as it can be read (a malformed record: from its bytes)."""
    if record.event is not None:
        return record.event
    try:
        obj = json.loads(base64.b64decode(record.raw_b64))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _record_time(record: InboundRecord.Received) -> tuple[str | None, date]:
    """The business time as received, and the date it counts on (the recorded date when the
    record carries no readable time)."""
    time = _text(_envelope_of(record).get("time"))
    if time is not None:
        try:
            return time, business_date(datetime.fromisoformat(time))
        except ValueError:
            pass
    return time, business_date(record.recorded_at)


def event_entry(event: Provider.Event, notification: int) -> dict[str, Any]:
    return {
        "notification": notification,
        "outcome": "accepted",
        "sequence": event.originator_version,
        "type": event.WIRE_TYPE,
        "event": type(event).__name__,
        "id": event.ce_id,
        "source": event.ce_source,
        "time": _iso(event.timestamp),
        "recorded_at": _iso(event.recorded_at),
        "codes": [],
        "reason": None,
        "position": None,
        "record": None,
    }


def record_entry(record: InboundRecord.Received, notification: int) -> dict[str, Any]:
    envelope = _envelope_of(record)
    time, _ = _record_time(record)
    return {
        "notification": notification,
        "outcome": record.outcome,
        "sequence": None,
        "type": record.event_type or _text(envelope.get("type")),
        "event": None,
        "id": record.ce_id,
        "source": _text(envelope.get("source")),
        "time": time,
        "recorded_at": _iso(record.recorded_at),
        "codes": list(record.codes),
        "reason": record.reason,
        "position": record.position,
        "record": str(record.originator_id),
    }


def history(
    app: ProviderLifecycle, store: AuditStore, uscc: str, as_of: date | None = None
) -> dict[str, Any]:
    """Every inbound record of ``uscc``, in store order (business date ≤ ``as_of``)."""
    pid = provider_id(uscc)
    with store.audit_reader() as reader:
        ids = list(dict.fromkeys([pid, *reader.subject_streams(uscc)]))
        found = list(streams(reader, ids))
    report = Report()
    entries: list[dict[str, Any]] = []
    by_record: dict[Any, dict[str, Any]] = {}
    sequence_of: dict[str, int] = {}
    rows = sorted((row for s in found for row in s.events), key=lambda r: r.notification_id)
    for row in rows:
        event = app.mapper.to_domain_event(
            StoredEvent(row.originator_id, row.originator_version, row.topic, row.state)
        )
        if isinstance(event, Provider.Event):
            sequence_of[event.ce_id] = event.originator_version
            if as_of is None or event.business_date <= as_of:
                entries.append(event_entry(event, row.notification_id))
        elif isinstance(event, InboundRecord.Received):
            entry = record_entry(event, row.notification_id)
            entry["resubmissions"] = []
            if event.outcome == "duplicate":
                entry["duplicate_of"] = sequence_of.get(event.ce_id or "")
            by_record[event.originator_id] = entry
            if as_of is None or _record_time(event)[1] <= as_of:
                entries.append(entry)
        elif isinstance(event, InboundRecord.Resubmitted):
            target = by_record.get(event.originator_id)
            if target is not None:
                target["resubmissions"].append({"by": event.by, "at": _iso(event.resubmitted_at)})
    for stream in found:
        report.streams += 1
        report.checked += len(stream.events)
        problem = check_stream(stream)
        if problem is not None:
            report.broken.append(broken_at(stream, problem))
    return {
        "uscc": uscc,
        "as_of": as_of.isoformat() if as_of else None,
        "count": len(entries),
        "entries": entries,
        "verify": report.as_dict(),
    }


# --- export -----------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "notification",
    "kind",
    "outcome",
    "uscc",
    "sequence",
    "type",
    "event",
    "id",
    "source",
    "time",
    "recorded_at",
    "codes",
    "reason",
    "position",
    "record",
    "data",
    "raw_b64",
)


def _mask_data(data: Any, include_personal_data: bool) -> Any:
    if include_personal_data or not isinstance(data, dict) or "contact" not in data:
        return data
    return {**data, "contact": mask_contact(data["contact"])}


def export_rows(
    app: ProviderLifecycle,
    since: date | None = None,
    until: date | None = None,
    *,
    include_personal_data: bool = False,
    stop: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    page: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every recorded event and inbound record up to notification ``stop`` (the current end
    by default), in store order, whose business date is within ``since``…``until``."""
    recorder = app.process_recorder
    stop = stop if stop is not None else recorder.max_notification_id() or 0
    usccs: dict[Any, str] = {}
    start = 1
    while start <= stop:
        notifications = recorder.select_notifications(start, page, stop=stop)
        if not notifications:
            break
        for n in notifications:
            event = app.mapper.to_domain_event(n)
            row = _export_row(event, n.id, usccs, include_personal_data)
            if row is not None and _within(row.pop("_day"), since, until):
                yield row
        if on_progress is not None:
            on_progress(notifications[-1].id - start + 1)
        start = notifications[-1].id + 1


def _within(day: date, since: date | None, until: date | None) -> bool:
    return (since is None or day >= since) and (until is None or day <= until)


def _export_row(
    event: Any, notification: int, usccs: dict[Any, str], include_personal_data: bool
) -> dict[str, Any] | None:
    if isinstance(event, Provider.Event):
        if isinstance(event, Provider.Applied):
            usccs[event.originator_id] = event.uscc
        row = event_entry(event, notification)
        row.update(
            kind="event",
            uscc=usccs.get(event.originator_id),
            data=_mask_data(event.data, include_personal_data),
            raw_b64=None,
            _day=event.business_date,
        )
        return row
    if isinstance(event, InboundRecord.Received):
        row = record_entry(event, notification)
        data = (event.event or {}).get("data")
        row.update(
            kind="record",
            uscc=event.subject,
            data=_mask_data(data, include_personal_data),
            raw_b64=event.raw_b64 if include_personal_data else None,
            _day=_record_time(event)[1],
        )
        return row
    if isinstance(event, InboundRecord.Resubmitted):
        row = dict.fromkeys(EXPORT_COLUMNS)
        row.update(
            notification=notification,
            kind="resubmission",
            outcome="resubmitted",
            record=str(event.originator_id),
            sequence=event.originator_version,
            time=_iso(event.resubmitted_at),
            recorded_at=_iso(event.resubmitted_at),
            reason=f"re-submitted by {event.by}",
            codes=[],
            _day=business_date(event.resubmitted_at),
        )
        return row
    return None


class ExportWriter:
    """Writes export rows as JSON lines or CSV (lists and objects as JSON in a cell)."""

    def __init__(self, out: IO[str], fmt: Format) -> None:
        self.out = out
        self.fmt = fmt
        self.count = 0
        self._csv: Any = None
        if fmt == "csv":
            self._csv = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
            self._csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self.count += 1
        if self._csv is None:
            self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        self._csv.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                for k, v in row.items()
            }
        )


def export(
    app: ProviderLifecycle,
    out: Path,
    fmt: Format = "jsonl",
    since: date | None = None,
    until: date | None = None,
    *,
    include_personal_data: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write the export to ``out``; returns the number of rows."""
    stop = app.process_recorder.max_notification_id() or 0
    if on_start is not None:
        on_start(stop)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = ExportWriter(handle, fmt)
        for row in export_rows(
            app,
            since,
            until,
            include_personal_data=include_personal_data,
            stop=stop,
            on_progress=on_progress,
        ):
            writer.write(row)
    return writer.count
