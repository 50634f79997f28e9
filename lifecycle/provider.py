"""The ``Provider`` aggregate: one legal entity's lifecycle across every tenure.

Commands judge an inbound event against the rulebook and either record it (a domain
event carrying the CloudEvents id, source and business time) or raise
:class:`Refused` with the clause codes it breaks (CONTRACT.md's refusal table).
Duplicates (a repeated (source, id), across providers) are recognised before the aggregate
is asked, by the application service (``lifecycle.application``, CONTRACT.md 1.1).
The business time of each event is its ``timestamp``; the domain never reads the clock.

Order of judgement (CONTRACT.md): a duplicate first, then ``ORDER`` (business dates never
go backwards for one provider), then the rows of the refusal table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Final, Literal, get_args
from uuid import UUID

from eventsourcing.domain import Aggregate

from lifecycle import contract
from lifecycle.admission import Unmet, unmet_requirements
from lifecycle.contract import Envelope
from lifecycle.eligibility import Eligibility, Milestone, eligibility, standing
from lifecycle.rules import DEPOSIT_FEN, ORDER, Clause, business_date
from lifecycle.uscc import provider_id

Status = Literal["applied", "admitted", "active", "exited", "expelled", "declined"]
STATUSES: Final[tuple[Status, ...]] = get_args(Status)
OPEN: frozenset[str] = frozenset({"applied", "admitted"})


class Refused(Exception):
    """The event contradicts the rules; ``codes`` are the clauses it breaks."""

    def __init__(self, codes: list[str], reason: str) -> None:
        super().__init__(reason)
        self.codes = codes
        self.reason = reason


@dataclass
class Violation:
    clause: str
    severity: str
    on: date
    ce_id: str


class Provider(Aggregate):
    """A regional industry service provider, identified by its USCC."""

    class Event(Aggregate.Event):
        """Every provider event keeps the inbound CloudEvent it came from."""

        WIRE_TYPE: ClassVar[str]
        ce_id: str
        ce_source: str
        data: dict[str, Any]
        recorded_at: datetime
        #: The inbound CloudEvents extension attributes (CONTRACT.md 1.1); read them with
        #: :attr:`extensions`, which also serves events stored before 1.1 (without them).
        #: Keyword-only with a default, so an event built as 1.0 built it still can be.
        ce_extensions: dict[str, Any] = field(default_factory=dict, kw_only=True)

        @property
        def business_date(self) -> date:
            return business_date(self.timestamp)

        @property
        def extensions(self) -> dict[str, Any]:
            """The inbound event's extension attributes (``{}`` for events stored before 1.1)."""
            return self.__dict__.get("ce_extensions") or {}

        def apply(self, aggregate: Any) -> None:
            aggregate.accepted_ids.add(self.ce_id)
            self.evolve(aggregate)

        def evolve(self, p: Provider) -> None:
            """How the event changes the provider's state."""

    class ApplicationEvent(Event):
        """An application. v2 of the event adds the payload's version and a structured address.

        ``data`` stays the payload exactly as received (v1: ``entity_city``; v2: ``address``).
        Events stored as v1 are upcast when loaded; stored events are never rewritten (the
        hash chain is over the stored bytes).
        """

        WIRE_TYPE = "provider.Applied"
        class_version = 2
        payload_version: int
        address: dict[str, str | None]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["payload_version"] = 1
            state["address"] = contract.address_from_v1(state["data"])

        @property
        def application(self) -> dict[str, Any]:
            """The application in one shape whatever its version: v1's fields plus address."""
            return contract.application_view(self.data, self.payload_version)

        def evolve(self, p: Provider) -> None:
            p.open_tenure(self)

    class Applied(ApplicationEvent, Aggregate.Created):
        """The first application of an entity: starts its one history."""

        uscc: str

    class Reapplied(ApplicationEvent):
        """A later application (wire type ``provider.Applied``) after a closed tenure."""

    class Admitted(Event):
        WIRE_TYPE = "provider.Admitted"

        def evolve(self, p: Provider) -> None:
            p.status = "admitted"
            p.admitted_on = self.business_date
            # An admission discharges an earlier A1.2.2-1 expulsion's A1.3-2 condition.
            p.milestones.append(Milestone(self.business_date, "admitted"))

    class DepositPaid(Event):
        WIRE_TYPE = "provider.DepositPaid"

        def evolve(self, p: Provider) -> None:
            p.deposit_balance_fen += self.data["amount_fen"]

    class DepositDeducted(Event):
        WIRE_TYPE = "provider.DepositDeducted"

        def evolve(self, p: Provider) -> None:
            p.deposit_balance_fen -= self.data["amount_fen"]

    class ViolationRecorded(Event):
        WIRE_TYPE = "provider.ViolationRecorded"

        def evolve(self, p: Provider) -> None:
            p.violations.append(
                Violation(
                    self.data["clause"], self.data["severity"], self.business_date, self.ce_id
                )
            )

    class Exited(Event):
        WIRE_TYPE = "provider.Exited"

        def evolve(self, p: Provider) -> None:
            p.close_tenure("exited", Milestone(self.business_date, "exited"))

    class Expelled(Event):
        WIRE_TYPE = "provider.Expelled"

        def evolve(self, p: Provider) -> None:
            readmission = self.data.get("readmission") or {}
            until = readmission.get("until")
            p.close_tenure(
                "expelled",
                Milestone(
                    self.business_date,
                    "expelled",
                    ground=self.data["ground"],
                    readmission_until=date.fromisoformat(until) if until else None,
                    readmission_permanent=bool(readmission.get("permanent")),
                ),
            )

    class ApplicationDeclined(Event):
        WIRE_TYPE = "provider.ApplicationDeclined"

        def evolve(self, p: Provider) -> None:
            p.close_tenure("declined", Milestone(self.business_date, "declined"))

    class ReadmissionDecided(Event):
        """The platform's decision that ends a manual review (A1.4): the re-admission
        restriction of the expulsion under review (A1.3-1), or none (``cleared``)."""

        WIRE_TYPE = "provider.ReadmissionDecided"

        def evolve(self, p: Provider) -> None:
            readmission = self.data["readmission"]
            until = readmission.get("until")
            p.milestones.append(
                Milestone(
                    self.business_date,
                    "decided",
                    readmission_until=date.fromisoformat(until) if until else None,
                    readmission_permanent=bool(readmission.get("permanent")),
                )
            )

    # --- state ------------------------------------------------------------------------

    def __init__(self, uscc: str) -> None:
        self.uscc = uscc
        self._status: Status | None = None
        self.deposit_balance_fen = 0
        self.violations: list[Violation] = []
        self.application: dict[str, Any] | None = None
        self.applied_on: date | None = None
        self.admitted_on: date | None = None
        self.milestones: list[Milestone] = []
        self.accepted_ids: set[str] = set()

    @staticmethod
    def create_id(uscc: str) -> UUID:
        return provider_id(uscc)

    @property
    def status(self) -> Status | None:
        """``active`` is admitted with a deposit balance of at least CNY 100,000 (A1.1.1-3)."""
        if self._status == "admitted" and self.deposit_balance_fen >= DEPOSIT_FEN:
            return "active"
        return self._status

    @status.setter
    def status(self, value: Status) -> None:
        self._status = value

    @property
    def tenure_open(self) -> bool:
        return self._status in OPEN

    @property
    def deposit_shortfall_fen(self) -> int:
        """How much is missing to the full deposit while admitted (0 when none)."""
        if self._status != "admitted":
            return 0
        return max(0, DEPOSIT_FEN - self.deposit_balance_fen)

    def open_tenure(self, event: Provider.ApplicationEvent) -> None:
        self._status = "applied"
        self.application = event.application
        self.applied_on = event.business_date
        self.admitted_on = None
        self.deposit_balance_fen = 0  # a new tenure starts from zero
        self.milestones.append(Milestone(event.business_date, "applied"))

    def close_tenure(self, status: Status, milestone: Milestone) -> None:
        # The deposit belongs to the tenure; refund or forfeiture is settled elsewhere.
        self._status = status
        self.deposit_balance_fen = 0
        self.milestones.append(milestone)

    def unmet_requirements(self) -> list[Unmet]:
        """A1.1 requirements (deposit aside) the open application fails."""
        if self.application is None or self.applied_on is None:
            return []
        return unmet_requirements(contract.application_for_rules(self.application), self.applied_on)

    def eligibility(self, as_of: date) -> Eligibility:
        return eligibility(self.milestones, as_of)

    # --- commands: judge, then record or refuse ---------------------------------------

    @classmethod
    def start(cls, envelope: Envelope, recorded_at: datetime) -> Provider:
        """The first accepted event of an entity must be its application."""
        if envelope.type != "provider.Applied":
            raise Refused(
                [Clause.STATE], f"{_short(envelope.type)} for an entity that never applied"
            )
        return cls._create(
            cls.Applied,
            uscc=envelope.subject,
            timestamp=envelope.time,
            **_event_fields(envelope, recorded_at),
            **_application_fields(envelope),
        )

    def handle(self, envelope: Envelope, recorded_at: datetime) -> None:
        """Judge a later event of this entity; record it or raise ``Refused``."""
        judge = getattr(self, "_judge_" + _short(envelope.type))
        self._judge_order(envelope)  # after a duplicate, before the refusal table's rows
        event_class: type[Provider.Event] = judge(envelope)
        fields = _event_fields(envelope, recorded_at)
        if issubclass(event_class, Provider.ApplicationEvent):
            fields.update(_application_fields(envelope))
        self.trigger_event(event_class, timestamp=envelope.time, **fields)

    @property
    def last_business_date(self) -> date:
        """The Asia/Shanghai date of the last accepted event (its ``timestamp``)."""
        return business_date(self.modified_on)

    def _judge_order(self, envelope: Envelope) -> None:
        """``ORDER``: never an event dated before the provider's last accepted event, so a
        late or back-dated event cannot shorten a cooldown (A1.3-3, A1.3-5). Events of one
        business day may come in any order."""
        last = self.last_business_date
        if envelope.business_date < last:
            raise Refused(
                [ORDER],
                f"ORDER: business date {envelope.business_date} (Asia/Shanghai) is before "
                f"{last}, the date of the provider's last accepted event; business dates "
                "never go backwards within one provider's history: fix the date upstream "
                "and send it again as a new event (this id is now taken)",
            )

    def _judge_Applied(self, envelope: Envelope) -> type[Provider.Event]:
        if self.tenure_open:
            raise Refused([Clause.STATE], f"a tenure is open (status {self.status})")
        # Every past exit applies, even if this application is dated before it.
        verdict = eligibility(self.milestones, envelope.business_date, whole_history=True)
        if verdict.can_apply is False:
            # A1.3-1, A1.3-3, A1.3-4 or A1.3-5: the most restrictive past exit.
            raise Refused([verdict.clause or Clause.STATE], verdict.reason)
        if verdict.can_apply is None:
            # A1.4: no dated or permanent restriction is in force, but a manual review is
            # pending (an A1.2.2-4 / A3-2 expulsion without one, and no decision since).
            raise Refused([Clause.A1_4], verdict.reason)
        if verdict.requires == "A1.1":
            # A1.3-2: after an A1.2.2-1 expulsion, only once A1.1 is met again.
            application = contract.application_for_rules(
                contract.application_view(envelope.data, envelope.payload_version)
            )
            unmet = unmet_requirements(application, envelope.business_date)
            if unmet:
                raise Refused(
                    [Clause.A1_3_2],
                    "expelled under A1.2.2-1 and still fails A1.1: "
                    + "; ".join(f"{u.clause} {u.reason}" for u in unmet),
                )
        return self.Reapplied

    def _judge_Admitted(self, envelope: Envelope) -> type[Provider.Event]:
        if self._status != "applied":
            raise Refused([Clause.STATE], f"no open application (status {self.status})")
        unmet = self.unmet_requirements()
        if unmet:
            # A1.1: each failing requirement, deposit aside.
            raise Refused(
                [u.clause for u in unmet], "; ".join(f"{u.clause} {u.reason}" for u in unmet)
            )
        return self.Admitted

    def _require_open_tenure(self, envelope: Envelope) -> None:
        if not self.tenure_open:
            raise Refused(
                [Clause.STATE],
                f"{_short(envelope.type)} with no open tenure (status {self.status})",
            )

    def _judge_DepositPaid(self, envelope: Envelope) -> type[Provider.Event]:
        self._require_open_tenure(envelope)
        return self.DepositPaid

    def _judge_DepositDeducted(self, envelope: Envelope) -> type[Provider.Event]:
        self._require_open_tenure(envelope)
        return self.DepositDeducted

    def _judge_ViolationRecorded(self, envelope: Envelope) -> type[Provider.Event]:
        self._require_open_tenure(envelope)
        return self.ViolationRecorded

    def _judge_Exited(self, envelope: Envelope) -> type[Provider.Event]:
        if self._status != "admitted":
            raise Refused(
                [Clause.STATE], f"only an admitted provider can exit (status {self.status})"
            )
        codes: list[str] = []
        reasons: list[str] = []
        if not envelope.data["merchant_fees_settled"]:
            codes.append(Clause.A1_2_1_1)
            reasons.append("A1.2.1-1 service fees of bound merchants are not settled")
        if not envelope.data["transaction_obligations_fulfilled"]:
            codes.append(Clause.A1_2_1_2)
            reasons.append("A1.2.1-2 Heat Wave Engine transaction obligations are not fulfilled")
        if codes:
            raise Refused(codes, "; ".join(reasons))
        return self.Exited

    def _judge_Expelled(self, envelope: Envelope) -> type[Provider.Event]:
        if self._status != "admitted":
            raise Refused(
                [Clause.STATE], f"only an admitted provider can be expelled (status {self.status})"
            )
        return self.Expelled

    def _judge_ApplicationDeclined(self, envelope: Envelope) -> type[Provider.Event]:
        if self._status != "applied":
            raise Refused([Clause.STATE], f"no open application to decline (status {self.status})")
        return self.ApplicationDeclined

    def _judge_ReadmissionDecided(self, envelope: Envelope) -> type[Provider.Event]:
        if not standing(self.milestones).manual_review:
            raise Refused(
                [Clause.STATE],
                "no manual review (A1.4) is pending: no A1.2.2-4 or A3-2 expulsion without a "
                "re-admission restriction awaits the platform's decision "
                f"(status {self.status})",
            )
        return self.ReadmissionDecided


def _short(event_type: str) -> str:
    return event_type.removeprefix("provider.")


def _event_fields(envelope: Envelope, recorded_at: datetime) -> dict[str, Any]:
    return {
        "ce_id": envelope.id,
        "ce_source": envelope.source,
        "data": envelope.data,
        "recorded_at": recorded_at,
        "ce_extensions": dict(envelope.extensions),
    }


def _application_fields(envelope: Envelope) -> dict[str, Any]:
    version = envelope.payload_version
    application = contract.application_view(envelope.data, version)
    return {"payload_version": version, "address": application["address"]}


@dataclass
class Judgement:
    """What became of one event: accepted (with the provider) or refused (duplicates are
    recognised before, by the application service)."""

    outcome: Literal["accepted", "refused"]
    provider: Provider | None = None
    codes: list[str] = field(default_factory=list)
    reason: str | None = None


def judge(provider: Provider | None, envelope: Envelope, recorded_at: datetime) -> Judgement:
    """Judge one parsed event against the entity's history (``None``: never seen)."""
    try:
        if provider is None:
            return Judgement("accepted", Provider.start(envelope, recorded_at))
        provider.handle(envelope, recorded_at)
        return Judgement("accepted", provider)
    except Refused as refusal:
        return Judgement("refused", provider, [str(c) for c in refusal.codes], refusal.reason)
