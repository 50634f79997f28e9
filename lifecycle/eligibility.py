"""Re-admission eligibility (A1.3) as a pure function of history and a date.

Every restriction from every past exit applies; permanent beats all, otherwise the
latest ``from`` wins. Days are Asia/Shanghai calendar dates: an exit on day D allows
a new application from D + 180 (A1.3-3, A1.3-5). Restrictions that A1.3 leaves to
another rulebook (A1.3-1, and A3-2 expulsions) come with the event; without one the
answer is *manual review* (A1.4), never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from lifecycle.rules import ASSESSMENT_EXPULSION_COOLDOWN, VOLUNTARY_EXIT_COOLDOWN, Clause

MilestoneKind = Literal["applied", "declined", "exited", "expelled"]


@dataclass(frozen=True)
class Milestone:
    """A tenure opening or closing, as eligibility needs it."""

    on: date
    kind: MilestoneKind
    ground: str | None = None
    readmission_until: date | None = None
    readmission_permanent: bool = False


@dataclass(frozen=True)
class Restriction:
    """What one past exit says about applying again."""

    clause: Clause
    on: date
    from_: date | None = None
    permanent: bool = False
    manual_review: bool = False
    requires_admission: bool = False


@dataclass(frozen=True)
class Eligibility:
    can_apply: bool | None
    from_: date | None
    permanent: bool
    clause: str | None
    requires: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The CONTRACT.md shape: ``can_apply``, ``from``, ``permanent``, ``clause``, …"""
        return {
            "can_apply": self.can_apply,
            "from": self.from_.isoformat() if self.from_ else None,
            "permanent": self.permanent,
            "clause": self.clause,
            "requires": self.requires,
            "reason": self.reason,
        }


def restriction_of(exit_: Milestone) -> Restriction:
    """A1.3: the restriction one exit or expulsion leaves behind."""
    d = exit_.on
    if exit_.kind == "exited":
        # A1.3-5: not within 180 days of a voluntary exit.
        return Restriction(Clause.A1_3_5, d, from_=d + VOLUNTARY_EXIT_COOLDOWN)
    if exit_.ground == Clause.A1_2_2_1:
        # A1.3-2: as soon as it meets the admission requirements again.
        return Restriction(Clause.A1_3_2, d, requires_admission=True)
    if exit_.ground == Clause.A1_2_2_2:
        # A1.3-3: 180 days after an assessment expulsion.
        return Restriction(Clause.A1_3_3, d, from_=d + ASSESSMENT_EXPULSION_COOLDOWN)
    if exit_.ground == Clause.A1_2_2_3:
        # A1.3-4: never.
        return Restriction(Clause.A1_3_4, d, permanent=True)
    # A1.2.2-4 (A1.3-1) and A3-2: as the other rulebook restricts it; it must come with
    # the event (A1.4).
    if exit_.readmission_permanent:
        return Restriction(Clause.A1_3_1, d, permanent=True)
    if exit_.readmission_until is not None:
        return Restriction(Clause.A1_3_1, d, from_=exit_.readmission_until)
    return Restriction(Clause.A1_3_1, d, manual_review=True)


def eligibility(
    history: Sequence[Milestone], as_of: date, *, whole_history: bool = False
) -> Eligibility:
    """May this entity apply on ``as_of``, given every milestone up to that day?

    With ``whole_history`` every recorded milestone counts, even one dated after
    ``as_of``: judging an application backdated before an exit must not forget the exit.
    """
    past = list(history) if whole_history else [m for m in history if m.on <= as_of]
    if not past:
        return Eligibility(True, None, False, None, None, "never applied")
    if past[-1].kind == "applied":
        return Eligibility(
            False,
            None,
            False,
            Clause.STATE,
            None,
            f"a tenure is open (applied on {past[-1].on})",
        )
    exits = [m for m in past if m.kind in ("exited", "expelled")]
    restrictions = [restriction_of(m) for m in exits]

    permanent = [r for r in restrictions if r.permanent]
    if permanent:
        # Permanent beats all; prefer A1.3-4 (law / major incident) when several.
        r = min(permanent, key=lambda r: (r.clause != Clause.A1_3_4, r.on))
        return Eligibility(
            False,
            None,
            True,
            r.clause,
            None,
            f"permanently barred from re-admission ({r.clause}, exit on {r.on})",
        )

    pending = [r for r in restrictions if r.from_ is not None and r.from_ > as_of]
    if pending:
        # Every restriction applies: the latest ``from`` wins.
        r = max(pending, key=lambda r: (r.from_, r.on))
        assert r.from_ is not None
        return Eligibility(
            False,
            r.from_,
            False,
            r.clause,
            None,
            f"may not apply before {r.from_} ({r.clause}, exit on {r.on})",
        )

    last_exit = exits[-1] if exits else None
    # A manual review is pending until the platform lets the entity apply again.
    if last_exit is not None and restrictions[-1].manual_review and past[-1] is last_exit:
        return Eligibility(
            None,
            None,
            False,
            Clause.A1_3_1,
            None,
            f"manual review: the expulsion on {last_exit.on} ({last_exit.ground}) carried "
            "no re-admission restriction, which another rulebook sets (A1.3-1, A1.4)",
        )

    expulsions = [r for m, r in zip(exits, restrictions, strict=True) if m.kind == "expelled"]
    if expulsions and expulsions[-1].requires_admission:
        return Eligibility(
            True,
            None,
            False,
            Clause.A1_3_2,
            "A1.1",
            f"expelled on {expulsions[-1].on} under A1.2.2-1: may apply once it meets the "
            "admission requirements (A1.1) again",
        )
    if exits:
        return Eligibility(True, None, False, None, None, f"no restriction applies on {as_of}")
    return Eligibility(True, None, False, None, None, "no exit on record")
