"""One provider's life story, event by event, with what the rulebook will make of each."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from lifecycle.rules import DEPOSIT_FEN, Capability, Clause
from service.demo.catalogue import (
    ADVANTAGES,
    CITIES,
    CLAUSE_ORDER,
    COMMON_VIOLATIONS,
    CST,
    DECLINE_TEXT,
    DEFECT_CLAUSE,
    GRAVE_VIOLATIONS,
    LOW_CAPITALS_FEN,
    VIOLATIONS,
    City,
    random_person,
    settled,
)


@dataclass
class Planned:
    """One event of a provider's story and what the rules will make of it."""

    time: datetime
    provider: int
    seq: int
    type: str
    subject: str
    data: dict[str, Any]
    outcome: Literal["accepted", "refused"] = "accepted"
    codes: tuple[str, ...] = ()


@dataclass
class Exit:
    kind: Literal["exited", "expelled"]
    on: date
    ground: str | None = None
    readmission: dict[str, Any] | None = None


@dataclass
class Story:
    """One provider's timeline; business time only moves forward."""

    rng: random.Random
    index: int
    uscc: str
    city: City
    application: dict[str, Any]
    now: datetime
    events: list[Planned] = field(default_factory=list)

    # --- time and emitting -------------------------------------------------------------

    def _moment(self, day: date) -> datetime:
        rng = self.rng
        moment = datetime.combine(
            day, time(rng.randint(9, 21), rng.randint(0, 59), rng.randint(0, 59)), CST
        )
        if moment <= self.now:
            moment = self.now + timedelta(
                minutes=self.rng.randint(3, 90), seconds=rng.randint(0, 59)
            )
        self.now = moment
        return moment

    def on(
        self,
        day: date,
        event_type: str,
        data: dict[str, Any],
        refused: tuple[str, ...] = (),
    ) -> date:
        """Emit an event on ``day`` (or just after the previous one); its business date."""
        moment = self._moment(day)
        self.events.append(
            Planned(
                moment,
                self.index,
                len(self.events),
                "provider." + event_type,
                self.uscc,
                copy.deepcopy(data),
                "refused" if refused else "accepted",
                tuple(str(c) for c in refused),
            )
        )
        return moment.date()

    def after(
        self,
        lo: int,
        hi: int,
        event_type: str,
        data: dict[str, Any],
        refused: tuple[str, ...] = (),
    ) -> date:
        """Emit an event ``lo``…``hi`` days after the previous one."""
        day = self.now.date() + timedelta(days=self.rng.randint(lo, hi))
        return self.on(day, event_type, data, refused)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # --- payloads ----------------------------------------------------------------------

    def defective(
        self, allowed: tuple[str, ...] = tuple(DEFECT_CLAUSE)
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The application with one or two A1.1 defects, and the clauses they break."""
        rng = self.rng
        defects = rng.sample(allowed, 2 if rng.random() < 0.25 else 1)
        data = copy.deepcopy(self.application)
        for defect in defects:
            if defect == "individual_business":
                data["entity_type"] = rng.choice(
                    ["individual_business", "individual_business", "individual", "other"]
                )
            elif defect == "unverified":
                data["real_name_verified"] = False
            elif defect == "not_taxpayer":
                data["general_taxpayer"] = False
            elif defect == "low_capital":
                data["registered_capital_fen"] = rng.choice(LOW_CAPITALS_FEN)
            elif defect == "young":
                # A new company without the statement; the fixed application adds one.
                registered = self.now.date() - timedelta(days=rng.randint(30, 300))
                data["registered_on"] = registered.isoformat()
                data["advantage_statement"] = None
                self.application["registered_on"] = registered.isoformat()
                self.application["advantage_statement"] = rng.choice(ADVANTAGES)
            elif defect == "store_account":
                data["is_store_account"] = True
            elif defect == "city_mismatch":
                other = rng.choice([c for c in CITIES if c.name != self.city.name])
                data["service_city"] = other.name
            elif defect == "capabilities":
                missing = set(rng.sample(list(Capability), rng.randint(1, 3)))
                data["capabilities"] = [c.value for c in Capability if c not in missing]
        broken = {DEFECT_CLAUSE[d] for d in defects}
        return data, tuple(str(c) for c in CLAUSE_ORDER if c in broken)

    def decline(self, codes: tuple[str, ...]) -> None:
        reason = ";".join(DECLINE_TEXT[Clause(c)] for c in codes)
        self.after(3, 25, "ApplicationDeclined", {"reason": reason, "clauses": list(codes)})

    def admitted(self) -> dict[str, Any]:
        return {"decided_by": "产业带运营-" + random_person(self.rng)}

    def deposit(self, amount: int) -> dict[str, Any]:
        return {"amount_fen": amount, "payment_ref": f"DEP{self.rng.randint(10**11, 10**12 - 1)}"}

    def violation(self, clause: str, severity: str | None = None) -> None:
        rng = self.rng
        severity = severity or rng.choices(["minor", "serious", "severe"], [6, 3, 1])[0]
        evidence = None if rng.random() < 0.2 else f"EV-{rng.randint(10**7, 10**8 - 1)}"
        self.after(
            15,
            200,
            "ViolationRecorded",
            {
                "clause": clause,
                "severity": severity,
                "description": VIOLATIONS[clause],
                "evidence_ref": evidence,
            },
        )

    # --- the story ---------------------------------------------------------------------

    def tell(self) -> list[Planned]:
        start = self.now.date()
        r = self.rng.random()
        if r < 0.05:
            # A1.1 not met: the platform declines; some fix it and apply again.
            data, codes = self.defective()
            self.on(start, "Applied", data)
            self.decline(codes)
            if not self.chance(0.4):
                return self.events
            start = self.now.date() + timedelta(days=self.rng.randint(20, 200))
        elif r < 0.075:
            # An admission of an application that fails A1.1: refused with each clause.
            data, codes = self.defective()
            self.on(start, "Applied", data)
            self.after(2, 20, "Admitted", self.admitted(), refused=codes)
            if not self.chance(0.7):
                return self.events  # still "applied", under review
            self.decline(codes)
            return self.events
        next_day: date | None = start
        for _ in range(3):
            assert next_day is not None
            ended = self.tenure(next_day)
            if ended is None:
                break
            next_day = self.after_exit(ended)
            if next_day is None:
                break
        return self.events

    def tenure(self, apply_on: date) -> Exit | None:
        """Apply, get admitted, pay, serve; how (and whether) the tenure ended."""
        rng = self.rng
        self.on(apply_on, "Applied", self.application)
        if self.chance(0.02):
            # A second submission while the first is open.
            self.after(1, 10, "Applied", self.application, refused=(Clause.STATE,))
        if self.chance(0.03):
            return None  # still under review
        self.after(2, 20, "Admitted", self.admitted())
        paid = rng.random()
        if paid < 0.04:
            return None  # admitted, deposit not paid yet
        if paid < 0.20:
            first = rng.choice([3_000_000, 4_000_000, 5_000_000, 6_000_000])
            self.after(1, 10, "DepositPaid", self.deposit(first))
            if self.chance(0.1):
                return None  # the second instalment is still missing
            self.after(5, 45, "DepositPaid", self.deposit(DEPOSIT_FEN - first))
        else:
            self.after(0, 15, "DepositPaid", self.deposit(DEPOSIT_FEN))
        recorded = 0
        while recorded < 3 and self.chance(0.22):
            recorded += 1
            clause = rng.choice(COMMON_VIOLATIONS)
            self.violation(clause)
            if self.chance(0.3):
                self.deduct(clause)
        if self.chance(0.03):
            self.deduct(Clause.A4_1)
        if self.chance(0.02):
            # A second admission of an admitted provider.
            self.after(20, 200, "Admitted", self.admitted(), refused=(Clause.STATE,))
        return self.ending()

    def deduct(self, clause: str) -> None:
        rng = self.rng
        amount = rng.choice([200_000, 500_000, 1_000_000, 2_000_000, 3_000_000])
        if clause == Clause.A4_1:
            reason = "按《淘宝直播机构保证金管理规则》扣除违约金"
        else:
            reason = f"因{VIOLATIONS[clause]}赔付商家,从保证金中扣除"
        self.after(
            3,
            30,
            "DepositDeducted",
            {"amount_fen": amount, "reason": reason, "clause": str(clause)},
        )
        if self.chance(0.7):
            self.after(3, 40, "DepositPaid", self.deposit(amount))  # topped up again

    def ending(self) -> Exit | None:
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            return None  # still serving
        if r < 0.59:
            # A voluntary exit before the merchants' fees are settled: refused.
            unsettled = rng.choices(["fees", "obligations", "both"], [7, 2, 1])[0]
            codes = {
                "fees": (Clause.A1_2_1_1,),
                "obligations": (Clause.A1_2_1_2,),
                "both": (Clause.A1_2_1_1, Clause.A1_2_1_2),
            }[unsettled]
            self.after(
                60,
                600,
                "Exited",
                {
                    "merchant_fees_settled": unsettled == "obligations",
                    "transaction_obligations_fulfilled": unsettled == "fees",
                },
                refused=tuple(str(c) for c in codes),
            )
            if not self.chance(0.5):
                return None
            return Exit("exited", self.after(5, 60, "Exited", settled()))
        if r < 0.80:
            return Exit("exited", self.after(60, 700, "Exited", settled()))
        return self.expel()

    def expel(self) -> Exit:
        rng = self.rng
        ground = rng.choices(
            ["A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2"], [20, 25, 10, 20, 25]
        )[0]
        violations: list[str] = []
        readmission: dict[str, Any] | None = None
        if ground == "A1.2.2-2" and self.chance(0.5):
            violations = ["A2.3-2"]
        elif ground == "A1.2.2-3" and self.chance(0.5):
            violations = ["A2.2-5"]
        elif ground == "A1.2.2-4" and self.chance(0.6):
            violations = ["A2.3-1"]
        elif ground == "A3-2":
            violations = list(dict.fromkeys(rng.sample(GRAVE_VIOLATIONS, rng.randint(1, 2))))
        for clause in violations:
            grave = ground in ("A3-2", "A1.2.2-3")
            self.violation(clause, rng.choice(["serious", "severe"]) if grave else None)
        expel_on = self.now.date() + timedelta(days=rng.randint(20, 500))
        if ground in ("A1.2.2-4", "A3-2"):
            kind = rng.choices(["until", "permanent", "none"], [45, 25, 30])[0]
            if kind == "until":
                days = rng.choice([90, 180, 365, 365, 730])
                readmission = {"until": (expel_on + timedelta(days=days)).isoformat()}
            elif kind == "permanent":
                readmission = {"permanent": True}
        on = self.on(
            expel_on,
            "Expelled",
            {"ground": ground, "violations": violations, "readmission": readmission},
        )
        return Exit("expelled", on, ground, readmission)

    def after_exit(self, ended: Exit) -> date | None:
        """Attempts to come back: refused ones, and the day of a proper new application."""
        rng = self.rng
        d = ended.on

        def too_early(code: str, lo: int, hi: int) -> None:
            self.on(
                d + timedelta(days=rng.randint(lo, hi)),
                "Applied",
                self.application,
                refused=(code,),
            )

        if ended.kind == "exited":
            r = rng.random()
            if r < 0.03:
                self.after(1, 30, "DepositPaid", self.deposit(DEPOSIT_FEN), refused=(Clause.STATE,))
                return None
            if r < 0.15:
                too_early(Clause.A1_3_5, 20, 170)
                return d + timedelta(days=rng.randint(180, 400)) if self.chance(0.5) else None
            if r < 0.50:
                return d + timedelta(days=180 + rng.choice([0, rng.randint(1, 300)]))
            return None
        if ended.ground == "A1.2.2-1":
            if not self.chance(0.5):
                return None
            if self.chance(0.5):
                # Still failing A1.1 (deposit aside): A1.3-2.
                data, _ = self.defective(
                    ("not_taxpayer", "low_capital", "capabilities", "city_mismatch")
                )
                self.after(30, 300, "Applied", data, refused=(Clause.A1_3_2,))
                if not self.chance(0.4):
                    return None
            return self.now.date() + timedelta(days=rng.randint(30, 300))
        if ended.ground == "A1.2.2-2":
            if not self.chance(0.45):
                return None
            if self.chance(0.33):
                too_early(Clause.A1_3_3, 20, 170)
                if not self.chance(0.5):
                    return None
            return d + timedelta(days=rng.randint(180, 420))
        if ended.ground == "A1.2.2-3":
            if self.chance(0.3):
                too_early(Clause.A1_3_4, 30, 700)
            return None
        # A1.2.2-4 and A3-2: as the restriction that came with the expulsion says.
        if ended.readmission is None:
            # Manual review (A1.4): nobody guesses. Applications are refused until the
            # platform decides (provider.ReadmissionDecided); some reviews stay pending.
            if self.chance(0.5):
                too_early(Clause.A1_4, 5, 60)
            if not self.chance(0.75):
                return None
            return self.decide(ended)
        if ended.readmission.get("permanent"):
            if self.chance(0.25):
                too_early(Clause.A1_3_1, 30, 700)
            return None
        until = date.fromisoformat(ended.readmission["until"])
        if not self.chance(0.4):
            return None
        if self.chance(0.33) and (until - d).days > 20:
            too_early(Clause.A1_3_1, 5, (until - d).days - 1)
        return until + timedelta(days=rng.randint(0, 120))

    def decide(self, ended: Exit) -> date | None:
        """The platform's decision on a manual review (A1.4); the day of a new application."""
        rng = self.rng
        kind = rng.choices(["until", "permanent", "cleared"], [50, 20, 30])[0]
        decided = self.now.date() + timedelta(days=rng.randint(7, 90))
        if kind == "cleared":
            readmission: dict[str, Any] = {"cleared": True}
        elif kind == "permanent":
            readmission = {"permanent": True}
        else:
            days = rng.choice([0, 90, 180, 365])  # 0: may apply from the decision day itself
            readmission = {"until": (decided + timedelta(days=days)).isoformat()}
        decided = self.on(
            decided,
            "ReadmissionDecided",
            {"decided_by": "平台治理-" + random_person(rng), "readmission": readmission},
        )
        if kind == "permanent":
            if self.chance(0.25):
                self.after(30, 700, "Applied", self.application, refused=(Clause.A1_3_1,))
            return None
        if not self.chance(0.6):
            return None
        if kind == "cleared":
            return decided + timedelta(days=rng.randint(1, 120))
        until = date.fromisoformat(readmission["until"])
        if self.chance(0.33) and (until - decided).days > 20:
            self.after(
                1, (until - decided).days - 1, "Applied", self.application, refused=(Clause.A1_3_1,)
            )
        return until + timedelta(days=rng.randint(0, 120))
