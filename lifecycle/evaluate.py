"""Offline evaluation (CONTRACT.md ``lifecycle evaluate``): the live rules on a throw-away store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from lifecycle.application import InboundMessage, ProviderLifecycle, Result
from lifecycle.eligibility import eligibility
from lifecycle.provider import Provider

BATCH = 500


def outcome_entry(result: Result, line: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": result.id, "outcome": result.outcome}
    if result.outcome == "refused":
        entry["codes"] = result.codes
        entry["reason"] = result.reason
    elif result.outcome == "malformed":
        entry["reason"] = result.reason
        entry["line"] = line
    return entry


def provider_entry(provider: Provider | None, as_of: date) -> dict[str, Any]:
    if provider is None:
        return {
            "status": None,
            "deposit_balance_fen": 0,
            "violations": 0,
            "eligibility": eligibility([], as_of).as_dict(),
        }
    return {
        "status": provider.status,
        "deposit_balance_fen": provider.deposit_balance_fen,
        "violations": len(provider.violations),
        "eligibility": provider.eligibility(as_of).as_dict(),
    }


def evaluate(lines: Iterable[bytes], as_of: date) -> dict[str, Any]:
    """Judge each line in order; return the outcomes and every provider's state at ``as_of``."""
    app = ProviderLifecycle(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    outcomes: list[dict[str, Any]] = []
    subjects: dict[str, None] = {}
    batch: list[tuple[int, InboundMessage]] = []

    def flush() -> None:
        results = app.process([m for _, m in batch])
        for (line, _), result in zip(batch, results, strict=True):
            outcomes.append(outcome_entry(result, line))
            if result.outcome in ("accepted", "refused") and result.subject:
                subjects.setdefault(result.subject)
        batch.clear()

    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue  # blank lines are not records
        batch.append((number, InboundMessage(raw.rstrip(b"\r\n"), f"evaluate:line:{number}")))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    providers = {uscc: provider_entry(app.provider(uscc), as_of) for uscc in subjects}
    return {"outcomes": outcomes, "providers": providers}
