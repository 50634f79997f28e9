"""Seals: a Merkle root over every stream's head, made only for a store that verifies.

``lifecycle run`` makes each business day's seal (:func:`seal_daily`); ``lifecycle audit
seal`` makes one by hand and exports them, to keep off-system (``audit/verify.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from audit.verify import Report, SealCheck, add_seal_problems, scan, seals_to_check
from lifecycle.rules import business_date
from store.audit_port import AuditStore
from store.chain import Seal, make_seal

log = logging.getLogger(__name__)


class SealRefused(Exception):
    """The store does not verify: a seal would certify a broken history."""

    def __init__(self, report: Report) -> None:
        super().__init__(f"{len(report.broken)} broken; not sealed")
        self.report = report


def seal(
    store: AuditStore,
    now: datetime | None = None,
    label: str | None = None,
    *,
    daily: bool = False,
) -> Seal | None:
    """Verify the whole store and seal every stream's head, in one snapshot.

    ``label`` defaults to the business day (Asia/Shanghai) of ``now``. With ``daily``, nothing
    is done (``None``) when a seal with that label exists already: run it from cron.
    Raises :class:`SealRefused` when the store (or its earlier seals) does not verify.
    """
    moment = now or datetime.now(UTC)
    label = label or business_date(moment).isoformat()
    report = Report()
    with store.audit_reader() as reader:
        stored = reader.seals()
        if daily and any(s.label == label for s in stored):
            return None
        head = reader.max_notification_id()
        placeholder = Seal(0, "", label, head, 0, 0, "", "", "")
        new = SealCheck(placeholder, "store")
        checks = seals_to_check(stored, None)
        scan(reader, None, checks, report, new)
    add_seal_problems(report, stored, None, checks)
    if not report.ok:
        raise SealRefused(report)
    made = make_seal(
        stored[-1] if stored else None,
        moment.astimezone(UTC).isoformat(),
        label,
        head,
        new.merkle.count,
        new.events,
        new.merkle.root(),
    )
    store.insert_seal(made)
    return made


async def seal_daily(store: AuditStore, stop: asyncio.Event, every: float = 3600.0) -> None:
    """For ``lifecycle run``: make each business day's seal once (checked every ``every``
    seconds, and once at start). A store that does not verify is logged, never sealed."""
    while True:
        try:
            made = await asyncio.to_thread(seal, store, daily=True)
            if made is not None:
                log.info(
                    "sealed #%d (%s): %d streams up to notification %d, root %s",
                    made.seq,
                    made.label,
                    made.streams,
                    made.max_notification_id,
                    made.root,
                )
        except SealRefused as refused:
            log.error(
                "not sealed: the store does not verify (%d broken, first: %s)",
                len(refused.report.broken),
                refused.report.broken[0].as_dict(),
            )
        except Exception:  # the store is unreachable now: try again at the next check
            log.exception("sealing failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        if stop.is_set():
            return


def stored_seals(store: AuditStore) -> list[Seal]:
    with store.audit_reader() as reader:
        return reader.seals()
