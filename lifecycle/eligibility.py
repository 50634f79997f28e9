"""Re-admission eligibility (A1.3) as a pure function of history and a date.

Each way of leaving leaves a restriction behind, set by one clause of A1.3
(:data:`READMISSION`, keyed by the clause ID). Every restriction from every past exit
applies: permanent beats all, otherwise the latest ``from`` wins (:class:`Standing`, the
one home of that precedence, which the read side stores as columns). Days are
Asia/Shanghai calendar dates: an exit on day D allows a new application from D + 180
(A1.3-3, A1.3-5). Restrictions that A1.3 leaves to another rulebook (A1.3-1, and A3-2
expulsions) come with the event; without one the answer is *manual review* (A1.4),
never a guess, until the platform's decision (``provider.ReadmissionDecided``, a
``decided`` milestone) sets the restriction or clears it. A pending review survives every
later event. A1.3-2 binds the applications after an A1.2.2-1 expulsion until the provider
is admitted again (an ``admitted`` milestone discharges it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal

from lifecycle.rules import ASSESSMENT_EXPULSION_COOLDOWN, VOLUNTARY_EXIT_COOLDOWN, Clause

MilestoneKind = Literal["applied", "admitted", "declined", "exited", "expelled", "decided"]

#: Milestones that close a tenure and leave an A1.3 restriction behind.
EXIT_KINDS: Final = frozenset({"exited", "expelled"})
#: Milestones after which a tenure is open (CONTRACT.md: ``applied``, ``admitted``, ``active``).
OPEN_KINDS: Final = frozenset({"applied", "admitted"})


@dataclass(frozen=True)
class Milestone:
    """A tenure opening, admitted or closing, or a re-admission decision, as eligibility
    needs it.

    ``decided`` (``provider.ReadmissionDecided``, A1.4) ends a pending manual review with
    ``readmission_until``, ``readmission_permanent`` or neither (``cleared``).
    """

    on: date
    kind: MilestoneKind
    ground: str | None = None
    readmission_until: date | None = None
    readmission_permanent: bool = False

    @property
    def cleared(self) -> bool:
        """A decision that lifts the review's restriction altogether."""
        return (
            self.kind == "decided"
            and self.readmission_until is None
            and not self.readmission_permanent
        )


@dataclass(frozen=True)
class Restriction:
    """What one past exit (or the platform's decision on it) says about applying again."""

    clause: Clause
    on: date
    from_: date | None = None
    permanent: bool = False
    manual_review: bool = False
    requires_admission: bool = False
    decided_on: date | None = None  # set by a ``provider.ReadmissionDecided`` (A1.4)

    @property
    def source(self) -> str:
        """Where the restriction comes from, for reason texts."""
        if self.decided_on is not None:
            return f"{self.clause}, expulsion on {self.on}, decided on {self.decided_on}"
        return f"{self.clause}, exit on {self.on}"


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


# --- A1.3: the restriction each way of leaving sets, by clause ---------------------------


def _other_rulebook(exit_: Milestone) -> Restriction:
    # As the other rulebook restricts it; the restriction must come with the event (A1.4).
    if exit_.readmission_permanent:
        return Restriction(Clause.A1_3_1, exit_.on, permanent=True)
    if exit_.readmission_until is not None:
        return Restriction(Clause.A1_3_1, exit_.on, from_=exit_.readmission_until)
    return Restriction(Clause.A1_3_1, exit_.on, manual_review=True)


#: A1.3-n → the restriction it sets on an exit.
READMISSION: Final[dict[str, Callable[[Milestone], Restriction]]] = {
    # A1.3-1: an A1.2.2-4 (or A3-2) expulsion, as the Institution Management Specification says.
    "A1.3-1": _other_rulebook,
    # A1.3-2: as soon as it meets the admission requirements (A1.1) again.
    "A1.3-2": lambda m: Restriction(Clause.A1_3_2, m.on, requires_admission=True),
    # A1.3-3: 180 days after an assessment expulsion.
    "A1.3-3": lambda m: Restriction(
        Clause.A1_3_3, m.on, from_=m.on + ASSESSMENT_EXPULSION_COOLDOWN
    ),
    # A1.3-4: never, after a law / major-incident expulsion.
    "A1.3-4": lambda m: Restriction(Clause.A1_3_4, m.on, permanent=True),
    # A1.3-5: not within 180 days of a voluntary exit.
    "A1.3-5": lambda m: Restriction(Clause.A1_3_5, m.on, from_=m.on + VOLUNTARY_EXIT_COOLDOWN),
}

#: How the provider left (a voluntary exit, or an expulsion's ground) → the A1.3 clause.
CLAUSE_FOR_EXIT: Final[dict[str, str]] = {
    "exited": "A1.3-5",
    Clause.A1_2_2_1: "A1.3-2",
    Clause.A1_2_2_2: "A1.3-3",
    Clause.A1_2_2_3: "A1.3-4",
    Clause.A1_2_2_4: "A1.3-1",
    Clause.A3_2: "A1.3-1",
}


def decided(decision: Milestone, expulsion_on: date | None = None) -> Restriction | None:
    """A1.4 / A1.3-1: the restriction the platform's decision on a manual review sets
    (``None`` when it cleared it). ``expulsion_on``: the expulsion it decides on."""
    if decision.cleared:
        return None
    on = expulsion_on or decision.on
    if decision.readmission_permanent:
        return Restriction(Clause.A1_3_1, on, permanent=True, decided_on=decision.on)
    return Restriction(Clause.A1_3_1, on, from_=decision.readmission_until, decided_on=decision.on)


def restriction_of(exit_: Milestone) -> Restriction:
    """A1.3: the restriction one exit or expulsion (or a decision on one) leaves behind."""
    if exit_.kind == "decided":
        # A cleared decision leaves nothing behind: an unrestricted A1.3-1 marker.
        return decided(exit_) or Restriction(Clause.A1_3_1, exit_.on, decided_on=exit_.on)
    key = "exited" if exit_.kind == "exited" else (exit_.ground or "")
    return READMISSION[CLAUSE_FOR_EXIT.get(key, "A1.3-1")](exit_)


# --- the precedence of every past restriction ---------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Where re-admission stands once every milestone of a history is past.

    ``can_apply`` at a date D on or after the last milestone is then:
    false when ``tenure_open`` or ``permanent`` or ``blocked_until > D``; otherwise
    unknown (manual review, A1.4) when ``manual_review``; otherwise true (with
    ``requires_a11``: only with an application that meets A1.1, A1.3-2).
    """

    tenure_open: bool = False
    permanent: bool = False
    permanent_clause: str | None = None
    blocked_until: date | None = None
    blocked_clause: str | None = None
    manual_review: bool = False
    requires_a11: bool = False
    last_exit_on: date | None = None
    last: Milestone | None = None  # the last tenure milestone (a decision is not one)
    binding: Restriction | None = None  # the permanent one, else the latest dated one
    expelled_on: date | None = None  # the last expulsion, when it requires A1.1 again
    review: Milestone | None = None  # the expulsion whose manual review is pending (A1.4)
    applied_on: date | None = None  # the last application (the open tenure's)

    @property
    def clause(self) -> str | None:
        """The clause that governs the restriction (the most restrictive first)."""
        if self.tenure_open:
            return str(Clause.STATE)
        if self.permanent:
            return self.permanent_clause
        if self.blocked_until is not None:
            return self.blocked_clause
        if self.manual_review:
            return str(Clause.A1_4)
        if self.requires_a11:
            return str(Clause.A1_3_2)
        return None

    def can_apply(self, as_of: date) -> bool | None:
        return self.at(as_of).can_apply

    def at(self, as_of: date) -> Eligibility:
        """The eligibility on ``as_of`` (a day on or after the last milestone)."""
        last = self.last
        if last is None:
            return Eligibility(True, None, False, None, None, "never applied")
        if self.tenure_open:
            reason = f"a tenure is open (applied on {self.applied_on or last.on})"
            return Eligibility(False, None, False, Clause.STATE, None, reason)
        r = self.binding
        if self.permanent and r is not None:
            reason = f"permanently barred from re-admission ({r.source})"
            return Eligibility(False, None, True, r.clause, None, reason)
        if r is not None and r.from_ is not None and r.from_ > as_of:
            reason = f"may not apply before {r.from_} ({r.source})"
            return Eligibility(False, r.from_, False, r.clause, None, reason)
        if self.manual_review:
            review = self.review or last
            reason = (
                f"manual review (A1.4): the expulsion on {review.on} ({review.ground}) carried "
                "no re-admission restriction, which another rulebook sets (A1.3-1); the "
                "platform decides it (provider.ReadmissionDecided)"
            )
            return Eligibility(None, None, False, Clause.A1_4, None, reason)
        if self.requires_a11:
            reason = (
                f"expelled on {self.expelled_on} under A1.2.2-1: may apply once it meets the "
                "admission requirements (A1.1) again (A1.3-2)"
            )
            return Eligibility(True, None, False, Clause.A1_3_2, "A1.1", reason)
        if self.last_exit_on is not None:
            return Eligibility(True, None, False, None, None, f"no restriction applies on {as_of}")
        return Eligibility(True, None, False, None, None, "no exit on record")


def standing(milestones: Sequence[Milestone]) -> Standing:
    """Every restriction of every past exit (A1.3), in precedence: permanent beats all
    (A1.3-4 first when several), otherwise the latest ``from`` wins.

    An A1.2.2-4 / A3-2 expulsion without a restriction leaves a manual review pending
    (A1.4) until a later ``decided`` milestone replaces it by the platform's restriction
    (or clears it); nothing else ends it. A1.3-2 binds from an A1.2.2-1 expulsion until
    the next admission (or until a later exit, which brings its own restriction).
    """
    restrictions: list[Restriction] = []
    pending: list[Milestone] = []  # expulsions under manual review (A1.4), not yet decided
    requires_a11 = False
    expelled_on: date | None = None
    last: Milestone | None = None
    last_exit: Milestone | None = None
    applied_on: date | None = None
    for m in milestones:
        if m.kind == "decided":
            # A1.4: the platform's decision ends every review pending before it.
            if pending:
                r = decided(m, pending[-1].on)
                if r is not None:
                    restrictions.append(r)
                pending = []
            continue
        last = m
        if m.kind == "applied":
            applied_on = m.on
        elif m.kind == "admitted":
            requires_a11 = False  # A1.3-2 is discharged by a later admission
        elif m.kind in EXIT_KINDS:
            last_exit = m
            r = restriction_of(m)
            if r.manual_review:
                pending.append(m)
            else:
                restrictions.append(r)
            # A1.3-2 binds only while the last exit is an A1.2.2-1 expulsion.
            requires_a11 = r.requires_admission
            expelled_on = m.on if requires_a11 else None
    if last is None:
        return Standing()
    permanent = [r for r in restrictions if r.permanent]
    perm = min(permanent, key=lambda r: (r.clause != Clause.A1_3_4, r.on)) if permanent else None
    dated = [r for r in restrictions if r.from_ is not None]
    latest = max(dated, key=lambda r: (r.from_, r.on)) if dated else None
    return Standing(
        tenure_open=last.kind in OPEN_KINDS,
        permanent=perm is not None,
        permanent_clause=str(perm.clause) if perm else None,
        blocked_until=latest.from_ if latest else None,
        blocked_clause=str(latest.clause) if latest else None,
        manual_review=bool(pending),
        requires_a11=requires_a11,
        last_exit_on=last_exit.on if last_exit else None,
        last=last,
        binding=perm or latest,
        expelled_on=expelled_on,
        review=pending[-1] if pending else None,
        applied_on=applied_on,
    )


def eligibility(
    history: Sequence[Milestone], as_of: date, *, whole_history: bool = False
) -> Eligibility:
    """May this entity apply on ``as_of``, given every milestone up to that day?

    With ``whole_history`` every recorded milestone counts, even one dated after
    ``as_of``: judging an application backdated before an exit must not forget the exit.
    """
    past = list(history) if whole_history else [m for m in history if m.on <= as_of]
    return standing(past).at(as_of)
