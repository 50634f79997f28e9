"""Offline evaluation (CONTRACT.md ``lifecycle evaluate``): the live rules on a throw-away store.

Every line is judged in file order by the same application service as the Kafka consumer;
``providers`` answers *as of* the date, field by field, exactly as the read API's
``?as_of=D`` does (``ProviderLifecycle.provider_as_of``): the accepted events of business
date ≤ D, and the eligibility on D.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from lifecycle.application import InboundMessage, ProviderLifecycle, Result
from lifecycle.eligibility import eligibility
from lifecycle.parsing import parse_record
from lifecycle.provider import Provider

BATCH = 500


def outcome_entry(result: Result, line: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": result.id, "outcome": result.outcome}
    if result.outcome == "refused":
        entry["codes"] = result.codes
        entry["reason"] = result.reason
    elif result.outcome == "malformed":
        entry["id"] = _writable(result.id)
        entry["reason"] = result.reason
        entry["line"] = line
    return entry


def _writable(ce_id: str | None) -> str | None:
    """The id when it can be written back as UTF-8; ``None`` otherwise (CONTRACT.md)."""
    if ce_id is None:
        return None
    try:
        ce_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return ce_id


def provider_entry(provider: Provider | None, as_of: date) -> dict[str, Any]:
    """A provider's fields as of ``as_of``; ``provider`` holds its events of date ≤ ``as_of``.

    ``None`` (nothing accepted up to that day): no status, no deposit, no violations, and
    the eligibility of an entity never seen.
    """
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
        results = _process(app, [m for _, m in batch])
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
    providers = {uscc: provider_entry(app.provider_as_of(uscc, as_of), as_of) for uscc in subjects}
    return {"outcomes": outcomes, "providers": providers}


def _process(app: ProviderLifecycle, messages: list[InboundMessage]) -> list[Result]:
    """``app.process`` of a batch; should it fail, record by record, so one record that
    cannot be judged is that record's outcome (``internal_error``) and never the file's."""
    try:
        return app.process(messages)
    except Exception:  # nothing of the batch was stored: judge it record by record
        results = []
        for message in messages:
            try:
                results += app.process([message])
            except Exception as exc:  # CONTRACT.md: malformed, ``internal_error: …``
                parsed = parse_record(message.value)
                results.append(
                    Result(
                        "malformed",
                        message.position,
                        parsed.id,
                        reason=f"internal_error: judging raised {type(exc).__name__}",
                    )
                )
        return results
