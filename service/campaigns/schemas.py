"""What the audience and campaign API takes and returns (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from service.campaigns.definition import CampaignChannel, CampaignIn, VariantName
from service.campaigns.service import DryRun, Estimate
from service.campaigns.store import Audience, Campaign
from service.messaging.schemas import UserRef
from service.records.common import ID_PATTERN, NO_NUL

AudienceName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
Address = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class AudienceIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: AudienceName
    rules: dict[str, Any]  # see README, "Audiences"
    description: Annotated[str, msgspec.Meta(max_length=2_000, pattern=NO_NUL)] | None = None


class AudienceOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    rules: dict[str, Any]
    description: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: Audience) -> AudienceOut:
        return cls(
            id=a.id,
            name=a.name,
            rules=a.rules,
            description=a.description,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class EstimateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rules: dict[str, Any]


class EstimateOut(msgspec.Struct, kw_only=True):
    users: int
    with_consent: dict[str, int]

    @classmethod
    def of(cls, e: Estimate) -> EstimateOut:
        return cls(users=e.users, with_consent=e.with_consent)


class CampaignOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    status: str  # draft | scheduled | running | paused | completed | cancelled
    status_reason: str | None
    run: int
    next_run_at: datetime | None
    planned: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    settings: CampaignIn

    @classmethod
    def of(cls, c: Campaign) -> CampaignOut:
        return cls(
            id=c.id,
            name=c.name,
            status=c.status,
            status_reason=c.status_reason,
            run=c.run,
            next_run_at=c.next_run_at if c.status == "scheduled" else None,
            planned=c.planned,
            completed_at=c.completed_at,
            created_at=c.created_at,
            updated_at=c.updated_at,
            settings=c.definition,
        )


class CampaignPreviewIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: UserRef
    channel: CampaignChannel = "email"
    variant: VariantName | None = None


class TestSendIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    addresses: Annotated[list[Address], msgspec.Meta(min_length=1, max_length=10)]
    user_id: UserRef | None = None  # render as this user would get it (default: a sample recipient)
    variant: VariantName | None = None


class DryRunOut(msgspec.Struct, kw_only=True):
    audience: int
    treated: dict[str, int]
    holdout: int
    skipped: dict[str, int]
    delayed_by_send_window: int

    @classmethod
    def of(cls, d: DryRun) -> DryRunOut:
        return cls(
            audience=d.audience,
            treated=d.treated,
            holdout=d.holdout,
            skipped=d.skipped,
            delayed_by_send_window=d.delayed_by_send_window,
        )


Status = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]


class SuppressIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    emails: Annotated[list[Address], msgspec.Meta(min_length=1, max_length=1_000)]
    reason: Literal["staff", "complaint", "hard_bounce"] = "staff"


class EmailsIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    emails: Annotated[list[Address], msgspec.Meta(min_length=1, max_length=1_000)]


class Changed(msgspec.Struct, kw_only=True):
    changed: int


class SuppressionCheck(msgspec.Struct, kw_only=True):
    suppressed: dict[str, str | None]  # address -> reason, or null when it may be mailed


class SuppressionCounts(msgspec.Struct, kw_only=True):
    by_reason: dict[str, int]
