"""What the messaging API takes and returns (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from service.messaging.compose import Rendered
from service.messaging.deliveries import Delivery
from service.messaging.templates import MessageTemplate
from service.records.common import ID_PATTERN, NO_NUL

TemplateName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="name"),
]
LocaleTag = Annotated[
    str, msgspec.Meta(max_length=35, pattern=r"^([A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3})?$")
]
Source = Annotated[str, msgspec.Meta(max_length=200_000, pattern=NO_NUL)]
PartName = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z_]+$")]
ItemRef = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
UserRef = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
Recs = Annotated[
    int, msgspec.Meta(ge=0, le=50, description="recommended items added after the featured ones")
]
SocialChannel = Literal["x", "weibo", "wechat", "facebook", "webhook"]
PostText = Annotated[str, msgspec.Meta(min_length=1, max_length=70_000, pattern=NO_NUL)]
Link = Annotated[str, msgspec.Meta(max_length=2_048, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")]


class TemplateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: TemplateName
    kind: Literal["email", "push", "social"]
    parts: Annotated[dict[PartName, Source], msgspec.Meta(min_length=1, max_length=8)]
    locale: LocaleTag = ""
    note: Annotated[str, msgspec.Meta(max_length=1_000, pattern=NO_NUL)] | None = None


class TemplateOut(msgspec.Struct, kw_only=True):
    name: str
    kind: str
    locale: str
    version: int
    source: str  # shipped | staff
    parts: dict[str, str]
    created_at: datetime | None
    note: str | None

    @classmethod
    def of(cls, t: MessageTemplate) -> TemplateOut:
        return cls(
            name=t.name,
            kind=t.kind,
            locale=t.locale,
            version=t.version,
            source=t.source,
            parts=t.parts,
            created_at=t.created_at,
            note=t.note,
        )


class PreviewIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: UserRef
    channel: Literal["email", "push"] = "email"
    template: TemplateName | None = None
    parts: Annotated[dict[PartName, Source], msgspec.Meta(min_length=1, max_length=8)] | None = None
    items: Annotated[list[ItemRef], msgspec.Meta(max_length=50)] = []
    recommendations: Recs = 6
    locale: LocaleTag | None = None


class PreviewOut(msgspec.Struct, kw_only=True):
    channel: str
    template: str
    locale: str
    parts: dict[str, str]
    items: list[str]

    @classmethod
    def of(cls, r: Rendered) -> PreviewOut:
        return cls(channel=r.channel, template=r.template, locale=r.locale, parts=r.parts, items=r.items)


class SendIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: UserRef
    template: TemplateName
    channel: Literal["email", "push"] = "email"
    items: Annotated[list[ItemRef], msgspec.Meta(max_length=50)] = []
    recommendations: Recs = 6


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: int
    channel: str
    status: str  # pending | sending | sent | failed | unknown | cancelled
    attempts: int
    user_id: str | None
    template: str | None
    provider_id: str | None
    error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            channel=d.channel,
            status=d.status,
            attempts=d.attempts,
            user_id=d.user_id,
            template=d.template,
            provider_id=d.provider_id,
            error=d.error,
            created_at=d.created_at,
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
            sent_at=d.sent_at,
        )


class VariantIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: PostText | None = None
    title: Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)] | None = None
    link: Link | None = None


class SocialPostIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channels: Annotated[list[SocialChannel], msgspec.Meta(min_length=1, max_length=5)]
    template: TemplateName | None = None
    variants: dict[SocialChannel, VariantIn] = {}
    items: Annotated[list[ItemRef], msgspec.Meta(max_length=20)] = []
    locale: LocaleTag = "en"
    scheduled_at: datetime | None = None


class SocialPostOut(msgspec.Struct, kw_only=True):
    id: int
    scheduled_at: datetime
    channels: list[str]
    items: list[str]
    deliveries: list[DeliveryOut]
