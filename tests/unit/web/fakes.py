"""The read API's test doubles: a fake read model, an in-memory inbox, the tokens, a harness."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

import consumers.metrics  # noqa: F401  (registers the consumer's metrics in the default registry)
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.inbox import Inbox
from lifecycle.records import InboundRecord, record_id
from projections.model import InboxFilter, Page, ProviderFilter, SortKey, ViewStatus
from tests.factories import applied, line, uscc
from web.app import create_app
from web.auth import (
    Auditor,
)

TOKENS = {"reader": "r-token-1", "auditor": "a-token-2", "admin": "x-token-3"}
SPEC = ",".join(f"{role}:{token}" for role, token in TOKENS.items())
KNOWN = uscc(1)
OTHER = uscc(2)
UNKNOWN = uscc(3)
RECORD = "kafka:inbound:0:7"  # a malformed record kept in the store


def provider_doc(code: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "uscc": code,
        "company_name": "义乌市星辰电商服务有限公司",
        "city": "义乌",
        "status": "active",
        "deposit_balance_fen": 10_000_000,
        "deposit_shortfall_fen": 0,
        "violations": 1,
        "violation_list": [{"clause": "A2.2-4", "severity": "serious", "on": "2025-03-01"}],
        "eligibility": {
            "can_apply": False,
            "from": None,
            "permanent": False,
            "clause": "STATE",
            "requires": None,
            "reason": "a tenure is open",
        },
        "requirements": [],
        "unmet": [],
        "contact": {"name": "欧阳娜娜", "phone": "13812345678"},
        "timeline": [
            {
                "sequence": 1,
                "id": "e-1",
                "type": "provider.Applied",
                "time": "2025-01-02T10:00:00+08:00",
                "outcome": "accepted",
                "codes": [],
                "reason": None,
            },
            {
                "id": "e-2",
                "type": "provider.Applied",
                "time": "2025-01-05T11:00:00+08:00",
                "outcome": "refused",
                "codes": ["STATE"],
                "reason": "a tenure is open (status applied)",
            },
        ],
        "updated_at": "2025-03-01T02:00:00Z",
    }
    doc.update(overrides)
    return doc


@dataclass
class FakeReadModel:
    """An in-memory ReadModel that remembers how it was asked."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    inbox_items: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    down: bool = False
    status_fails: bool = False

    def providers(
        self, f: ProviderFilter, *, offset: int = 0, limit: int = 50, sort: SortKey = "uscc"
    ) -> Page:
        self.calls.append(("providers", (f, offset, limit, sort)))
        items = [
            {k: v for k, v in d.items() if k != "timeline"}
            for d in self.documents.values()
            if (f.status is None or d["status"] == f.status)
            and (f.city is None or d["city"] == f.city)
            and (f.q is None or f.q in d["company_name"] or f.q in d["uscc"])
        ]
        return Page(items[offset : offset + limit], len(items), offset, limit)

    def provider(self, code: str, as_of: date | None = None) -> dict[str, Any] | None:
        self.calls.append(("provider", (code, as_of)))
        return self.documents.get(code)

    def stats(self) -> dict[str, Any]:
        self.calls.append(("stats", None))
        return {
            "by_status": {"active": 1, "expelled": 1},
            "by_city": {"义乌": 1, "温州": 1},
            "per_day": [
                {"day": "2025-01-02", "admitted": 1, "exited": 0, "expelled": 0},
                {"day": "2025-06-30", "admitted": 0, "exited": 0, "expelled": 1},
            ],
            "outcomes": {
                "consumed": 9,
                "accepted": 6,
                "refused": 1,
                "malformed": 1,
                "duplicate": 1,
            },
        }

    def inbox(self, f: InboxFilter, *, offset: int = 0, limit: int = 50) -> Page:
        self.calls.append(("inbox", (f, offset, limit)))
        items = [i for i in self.inbox_items if f.outcome is None or i["outcome"] == f.outcome]
        return Page(items[offset : offset + limit], len(items), offset, limit)

    def status(self) -> list[ViewStatus]:
        if self.status_fails:
            raise ConnectionError("store down")
        return [ViewStatus("provider", 95, 100, 1), ViewStatus("inbox", 100, 100, 1)]

    def ping(self) -> None:
        if self.down:
            raise ConnectionError("store down")

    def last(self, name: str) -> Any:
        return [args for n, args in self.calls if n == name][-1]


@dataclass
class Settings:
    api_tokens: str = SPEC
    kafka_bootstrap: str = "127.0.0.1:9"


@dataclass
class Resubmissions:
    calls: list[tuple[list[str], str]] = field(default_factory=list)
    fail: bool = False

    def __call__(self, records: Sequence[InboundRecord], by: str) -> int:
        if self.fail:
            raise ConnectionError("Kafka unreachable")
        self.calls.append(([str(r.id) for r in records], by))
        return len(records)


def memory_lifecycle() -> ProviderLifecycle:
    """A store holding one malformed record (RECORD) and one refused record."""
    lifecycle = ProviderLifecycle(env={"PERSISTENCE_MODULE": "store.memory:Factory"})
    lifecycle.process(
        [
            InboundMessage(b"{not json", RECORD),
            InboundMessage(line(applied(KNOWN, "2025-01-01")), "kafka:inbound:0:8"),
            InboundMessage(line(applied(KNOWN, "2025-01-02")), "kafka:inbound:0:9"),
        ]
    )
    return lifecycle


def memory_inbox() -> Inbox:
    return Inbox(memory_lifecycle(), Resubmissions())


audit = APIRouter()


@audit.get("/v1/providers/{code}/history")
def history(code: str, who: Auditor) -> dict[str, Any]:
    return {"uscc": code, "by": who.role}


@dataclass
class Harness:
    client: TestClient
    read_model: FakeReadModel
    resubmissions: Resubmissions
    registry: CollectorRegistry


def harness(
    *,
    checks: dict[str, Callable[[], None]] | None = None,
    settings: Settings | None = None,
) -> Harness:
    read_model = FakeReadModel(
        documents={
            KNOWN: provider_doc(KNOWN),
            OTHER: provider_doc(
                OTHER,
                company_name="温州市云帆鞋服直播服务有限公司",
                city="温州",
                status="expelled",
                contact={"name": "张三", "phone": "13800000000"},
            ),
        },
        inbox_items=[
            {
                "record": str(record_id(RECORD)),
                "outcome": "malformed",
                "position": RECORD,
                "id": None,
                "subject": None,
                "type": None,
                "codes": [],
                "reason": "not valid JSON",
                "recorded_at": "2025-03-01T02:00:00+00:00",
                "resubmissions": 0,
            }
        ],
    )
    resubmissions = Resubmissions()
    registry = CollectorRegistry()
    Counter("lifecycle_test_shared_total", "a metric of the process", registry=registry).inc(3)
    app = create_app(
        read_model,
        lambda: Inbox(memory_lifecycle(), resubmissions),
        settings or Settings(),
        readiness_checks=checks if checks is not None else {"store": read_model.ping},
        extra_routers=[audit],
        registry=registry,
    )
    return Harness(TestClient(app), read_model, resubmissions, registry)


def auth(role: str | None) -> dict[str, str]:
    if role is None:
        return {}
    if role == "bogus":
        return {"Authorization": "Bearer not-a-token"}
    return {"Authorization": f"Bearer {TOKENS[role]}"}


RECORD_ID = str(record_id(RECORD))
