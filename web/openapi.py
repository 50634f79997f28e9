"""Documentation models: the OpenAPI shapes of the responses (which are the read model's dicts)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(Doc):
    code: str = Field(examples=["provider_not_found"])
    message: str


class ErrorBody(Doc):
    error: ErrorDetail


class EligibilityDoc(Doc):
    can_apply: bool | None
    from_: date | None = Field(None, alias="from")
    permanent: bool
    clause: str | None
    requires: str | None
    reason: str


class RequirementDoc(Doc):
    clause: str
    reason: str
    who: Literal["provider", "platform"]
    by: date | None


class ContactDoc(Doc):
    name: str = Field(examples=["张*"])
    phone: str = Field(examples=["138****0000"])


class ProviderDoc(Doc):
    uscc: str
    company_name: str | None
    city: str | None
    status: str | None
    deposit_balance_fen: int
    deposit_shortfall_fen: int | None = None
    violations: int
    violation_list: list[dict[str, Any]] = []
    eligibility: EligibilityDoc
    requirements: list[RequirementDoc] = []
    unmet: list[dict[str, Any]] = []
    contact: ContactDoc | None = None
    as_of: date


class ProviderPageDoc(Doc):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


class InboxItemDoc(Doc):
    record: str
    outcome: str
    position: str
    id: str | None
    subject: str | None
    type: str | None
    codes: list[str]
    reason: str | None
    recorded_at: str
    resubmissions: int


class InboxPageDoc(Doc):
    items: list[InboxItemDoc]
    total: int
    offset: int
    limit: int


class ResubmittedDoc(Doc):
    record: str
    resubmitted: bool
    sent: int
    by: str
    resubmissions: int


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}
