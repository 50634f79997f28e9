"""Pure functions from the domain to the read side's rows and documents.

Everything the views store about a provider is derived here from a
:class:`~lifecycle.provider.Provider` aggregate, so a view row equals what a replay of
the store gives by construction. Nothing here reads the clock: dates come in.

* :func:`provider_state` — the JSON document kept in a provider row (no date in it);
* :func:`lifecycle.eligibility.standing` — the eligibility restriction as SQL-filterable columns;
* :func:`eligibility_segments` — ``eligibility(milestones, D).can_apply`` as constant
  intervals of ``D``, so ``can_apply`` is filterable in SQL for *any* date exactly;
* :func:`stored_requirements` / :func:`requirements_at` — the Stripe-style requirements;
* :func:`provider_document` — the read API's provider document at a date.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from lifecycle.eligibility import Milestone, Standing, eligibility, restriction_of, standing
from lifecycle.provider import Provider
from lifecycle.rules import DEPOSIT_FEN, Clause

#: The bounds of eligibility segments. A segment holds the dates valid_from ≤ D < valid_to;
#: the last one ends at ``LAST_DAY`` and holds that day too (:meth:`Segment.covers`), so
#: every date from ``FIRST_DAY`` to ``LAST_DAY`` (9999-12-31) is answered.
FIRST_DAY = date.min
LAST_DAY = date.max


def dumps(value: Any) -> str:
    """Canonical JSON: the same state always gives the same bytes (for verify)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def iso_utc(moment: datetime) -> str:
    """A fixed-width UTC timestamp that sorts as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- milestones -----------------------------------------------------------------------


def milestone_dict(m: Milestone) -> dict[str, Any]:
    return {
        "on": m.on.isoformat(),
        "kind": m.kind,
        "ground": m.ground,
        "readmission_until": m.readmission_until.isoformat() if m.readmission_until else None,
        "readmission_permanent": m.readmission_permanent,
    }


def milestone_of(d: dict[str, Any]) -> Milestone:
    until = d.get("readmission_until")
    return Milestone(
        date.fromisoformat(d["on"]),
        d["kind"],
        ground=d.get("ground"),
        readmission_until=date.fromisoformat(until) if until else None,
        readmission_permanent=bool(d.get("readmission_permanent")),
    )


def milestones_of(state: dict[str, Any]) -> list[Milestone]:
    return [milestone_of(m) for m in state["milestones"]]


@dataclass(frozen=True)
class Segment:
    """``eligibility(milestones, D)`` is the same for every D with valid_from ≤ D < valid_to."""

    valid_from: date
    valid_to: date
    can_apply: bool | None
    clause: str | None

    def covers(self, day: date) -> bool:
        """Whether ``day`` is in the segment (the SQL filter in ``projections.reader`` too)."""
        return self.valid_from <= day and (day < self.valid_to or self.valid_to == LAST_DAY)


def eligibility_segments(milestones: Sequence[Milestone]) -> list[Segment]:
    """``can_apply`` as a step function of the date, from the domain's own ``eligibility``.

    Between two consecutive milestone dates the set of past milestones is fixed, and a
    pending cooldown only ends on a restriction's ``from`` date: with all of those as
    bounds, ``eligibility`` is constant on each interval, so one call per interval is exact.
    """
    bounds: set[date] = {m.on for m in milestones}
    for m in milestones:
        if m.kind in ("exited", "expelled", "decided"):
            start = restriction_of(m).from_
            if start is not None:
                bounds.add(start)
    points = [FIRST_DAY, *sorted(b for b in bounds if b > FIRST_DAY)]
    segments: list[Segment] = []
    for i, start in enumerate(points):
        end = points[i + 1] if i + 1 < len(points) else LAST_DAY
        verdict = eligibility(milestones, start)
        if segments and (segments[-1].can_apply, segments[-1].clause) == (
            verdict.can_apply,
            verdict.clause,
        ):
            segments[-1] = Segment(segments[-1].valid_from, end, verdict.can_apply, verdict.clause)
        else:
            segments.append(Segment(start, end, verdict.can_apply, verdict.clause))
    return segments


# --- requirements (Stripe-style) --------------------------------------------------------


def stored_requirements(
    status: str | None,
    deposit_balance_fen: int,
    deposit_shortfall_fen: int,
    unmet: Sequence[dict[str, Any]],
    r: Standing,
) -> list[dict[str, Any]]:
    """What stands between the provider and being active (or applying again).

    Each item: ``clause``, ``reason``, ``who`` must act next (``provider`` or
    ``platform``), ``by`` (a date where one applies) and ``until`` (the item lapses on
    that date by itself, e.g. a cooldown). :func:`requirements_at` drops lapsed items.
    """
    items: list[dict[str, Any]] = []

    def add(
        clause: str, reason: str, who: str, by: date | None = None, lapses: bool = False
    ) -> None:
        day = by.isoformat() if by else None
        items.append(
            {
                "clause": clause,
                "reason": reason,
                "who": who,
                "by": day,
                "until": day if lapses else None,
            }
        )

    if status == "applied":
        if unmet:
            for u in unmet:
                add(
                    u["clause"],
                    f"the open application fails {u['clause']}: {u['reason']}",
                    "provider",
                )
        else:
            add(
                "A1.1",
                "the open application meets A1.1 (deposit aside): awaiting the platform's "
                "admission decision",
                "platform",
            )
    elif status == "admitted" and deposit_shortfall_fen > 0:
        add(
            str(Clause.A1_1_1_3),
            f"deposit balance {deposit_balance_fen} fen is {deposit_shortfall_fen} fen short "
            f"of the full deposit of {DEPOSIT_FEN} fen (CNY 100,000): the provider must pay "
            "before it is active",
            "provider",
        )
    elif status in ("exited", "expelled", "declined"):
        if r.permanent:
            add(
                r.permanent_clause or str(Clause.A1_3_4),
                f"permanently barred from re-admission ({r.permanent_clause}); only the "
                "platform's other rules could lift it",
                "platform",
            )
        if r.blocked_until is not None and not r.permanent:
            add(
                r.blocked_clause or str(Clause.A1_3_5),
                f"cooldown ({r.blocked_clause}): may apply again from {r.blocked_until}",
                "provider",
                r.blocked_until,
                lapses=True,
            )
        if r.manual_review and not r.permanent:
            # A1.4: the platform acts next, with a provider.ReadmissionDecided.
            review = r.review
            expulsion = (
                f"the expulsion on {review.on} ({review.ground})" if review else "the expulsion"
            )
            add(
                str(Clause.A1_4),
                f"manual review (A1.4): {expulsion} carried no re-admission restriction, "
                "which another rulebook sets (A1.3-1); every application is refused until "
                "the platform decides (provider.ReadmissionDecided: until, permanent or cleared)",
                "platform",
            )
        if r.requires_a11 and not r.permanent:
            add(
                str(Clause.A1_3_2),
                "expelled under A1.2.2-1: a new application must meet A1.1 again",
                "provider",
            )
    return items


def requirements_at(items: Iterable[dict[str, Any]], as_of: date) -> list[dict[str, Any]]:
    """The requirements that still stand on ``as_of`` (the model's ``Requirement`` shape)."""
    out: list[dict[str, Any]] = []
    for item in items:
        until = item.get("until")
        if until is not None and date.fromisoformat(until) <= as_of:
            continue
        out.append(
            {
                "clause": item["clause"],
                "reason": item["reason"],
                "who": item["who"],
                "by": item["by"],
            }
        )
    return out


# --- the provider state document ------------------------------------------------------


def provider_state(p: Provider, updated_at: datetime | None) -> dict[str, Any]:
    """Everything the views keep about a provider; no date-dependent value in it."""
    application = p.application or {}
    status = p.status
    unmet = (
        [{"clause": str(u.clause), "reason": u.reason} for u in p.unmet_requirements()]
        if status == "applied"
        else []
    )
    r = standing(p.milestones)
    contact = application.get("contact")
    return {
        "uscc": p.uscc,
        "company_name": application.get("company_name"),
        "city": application.get("service_city"),
        "entity_city": application.get("entity_city"),
        "address": application.get("address"),
        "status": status,
        "deposit_balance_fen": p.deposit_balance_fen,
        "deposit_shortfall_fen": p.deposit_shortfall_fen,
        "violations": len(p.violations),
        "violation_list": [
            {"clause": v.clause, "severity": v.severity, "on": v.on.isoformat(), "id": v.ce_id}
            for v in p.violations
        ],
        "unmet": unmet,
        "contact": dict(contact) if isinstance(contact, dict) else None,
        "applied_on": p.applied_on.isoformat() if p.applied_on else None,
        "admitted_on": p.admitted_on.isoformat() if p.admitted_on else None,
        "milestones": [milestone_dict(m) for m in p.milestones],
        "requirements": stored_requirements(
            status, p.deposit_balance_fen, p.deposit_shortfall_fen, unmet, r
        ),
        "updated_at": iso_utc(updated_at) if updated_at else None,
    }


def unrecorded_state(uscc: str) -> dict[str, Any]:
    """The state of an entity with no accepted event (up to the date asked), in the shape of
    :func:`provider_state`: no status, no deposit, no violations, eligible as if never seen.

    The read API answers with it for a USCC that has records but no provider to show: only
    refused (or malformed, or duplicate) records, or none of its events dated by then.
    """
    return {
        "uscc": uscc,
        "company_name": None,
        "city": None,
        "entity_city": None,
        "address": None,
        "status": None,
        "deposit_balance_fen": 0,
        "deposit_shortfall_fen": 0,
        "violations": 0,
        "violation_list": [],
        "unmet": [],
        "contact": None,
        "applied_on": None,
        "admitted_on": None,
        "milestones": [],
        "requirements": [],
        "updated_at": None,
    }


LIST_KEYS = (
    "uscc",
    "company_name",
    "city",
    "address",
    "status",
    "deposit_balance_fen",
    "deposit_shortfall_fen",
    "violations",
    "violation_list",
    "unmet",
    "contact",
    "updated_at",
)


def provider_document(
    state: dict[str, Any], as_of: date, timeline: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The read model's provider document at ``as_of`` (``timeline`` omitted for lists)."""
    doc = {key: state.get(key) for key in LIST_KEYS}
    doc["eligibility"] = eligibility(milestones_of(state), as_of).as_dict()
    doc["requirements"] = requirements_at(state["requirements"], as_of)
    doc["applied_on"] = state.get("applied_on")
    doc["admitted_on"] = state.get("admitted_on")
    doc["as_of"] = as_of.isoformat()
    if timeline is not None:
        doc["timeline"] = timeline
    return doc
