"""What the routes of the API and the dashboard use, built once per app."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from lifecycle.inbox import AlreadyResubmitted, Inbox, NotResubmittable, RecordNotFound
from projections.model import ReadModel
from web.auth import ApiError, Principal
from web.operations import Check, Families
from web.params import check_uscc

log = logging.getLogger("lifecycle.api")


@dataclass
class Services:
    """What the routes use; kept on ``app.state.services``."""

    read_model: ReadModel
    inbox_factory: Callable[[], Inbox]
    checks: Mapping[str, Check]
    shared_registry: CollectorRegistry
    registry: CollectorRegistry
    request_seconds: Histogram
    _inbox: Inbox | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inbox(self) -> Inbox:
        if self._inbox is None:
            self._inbox = self.inbox_factory()
        return self._inbox

    def provider(self, uscc: str, as_of: date | None) -> dict[str, Any]:
        check_uscc(uscc)
        document = self.read_model.provider(uscc, as_of)
        if document is None:
            when = f" as of {as_of.isoformat()}" if as_of else ""
            raise ApiError(404, "provider_not_found", f"no provider {uscc}{when}")
        return document

    def resubmit_record(self, record: str, by: Principal) -> dict[str, Any]:
        """Produce a refused or malformed record again (admin only; checked by the caller).

        409 ``not_resubmittable`` for an accepted or duplicate record, 409
        ``already_resubmitted`` while its last re-submission has not come back.
        """
        try:
            record_id = UUID(record)
        except ValueError:
            raise ApiError(422, "invalid_record_id", "an inbox record id is a UUID") from None
        with self._lock:  # one re-submission at a time: the record's version must not race
            inbox = self.inbox()
            try:
                found = inbox.find(record_id)
            except RecordNotFound as exc:
                raise ApiError(404, "record_not_found", str(exc)) from None
            except Exception as exc:
                raise ApiError(503, "store_unavailable", "the store cannot be read") from exc
            try:
                sent = inbox.resubmit([found], by.name)
            except AlreadyResubmitted as exc:
                raise ApiError(409, "already_resubmitted", str(exc)) from None
            except NotResubmittable as exc:
                raise ApiError(409, "not_resubmittable", str(exc)) from None
            except Exception as exc:
                log.warning("re-submission failed: %s", exc.__class__.__name__)
                raise ApiError(
                    503, "resubmit_failed", "the record could not be re-submitted (Kafka or store)"
                ) from exc
        log.info("inbox record %s re-submitted by %s", record_id, by.name)
        return {
            "record": str(record_id),
            "resubmitted": True,
            "sent": sent,
            "by": by.name,
            "resubmissions": found.resubmissions,
        }

    def readiness(self) -> tuple[bool, dict[str, str]]:
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {exc}"[:300]
        return all(v == "ok" for v in results.values()), results

    def metrics_text(self) -> bytes:
        shared = list(self.shared_registry.collect())
        taken = {metric.name for metric in shared}
        # The app's own families, unless the process registry already has one so named.
        own = [m for m in self.registry.collect() if m.name not in taken]
        return generate_latest(Families(shared + own))
