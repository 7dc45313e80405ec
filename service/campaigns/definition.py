"""What a campaign is: the settings staff give it, checked, and the rules derived from them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from croniter import CroniterError, croniter

from service.errors import FieldProblem, InvalidInput
from service.messaging.channels import SOCIAL_CHANNELS
from service.messaging.compose import time_zone
from service.messaging.schemas import ItemRef, TemplateName
from service.records.common import NO_NUL

USER_CHANNELS = ("email", "push")
CampaignChannel = Literal["email", "push", "x", "weibo", "wechat", "facebook", "webhook"]
DEFAULT_TEMPLATES = {"email": "recommended_for_you", "push": "recommended_for_you"}
DEFAULT_SOCIAL_TEMPLATE = "featured_items"
FLOW_TEMPLATES = {  # shipped for email and push
    "abandoned_cart": "abandoned_cart",
    "browse_abandonment": "recommended_for_you",
    "back_in_stock": "back_in_stock",
    "post_purchase": "recommended_for_you",
}
MAIN_VARIANT = "main"
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, local time")]
VariantName = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$")]


class Variant(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: VariantName
    share: Annotated[float, msgspec.Meta(gt=0, le=1, description="share of the treated recipients")]
    templates: dict[CampaignChannel, TemplateName] = {}


class SendWindow(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Messages go out between `start` and `end` in each recipient's local time (quiet hours outside)."""

    start: Clock
    end: Clock


TriggerType = Literal["abandoned_cart", "browse_abandonment", "back_in_stock", "post_purchase"]


class Trigger(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A flow fired by what users do (see service.campaigns.flows)."""

    type: TriggerType
    after_hours: Annotated[float, msgspec.Meta(ge=0, le=720, description="wait after the event")] = 4.0
    dedupe_days: Annotated[float, msgspec.Meta(gt=0, le=365, description="one message per user per")] = 7.0
    min_views: Annotated[int, msgspec.Meta(ge=1, le=100, description="browse abandonment")] = 3
    lookback_days: Annotated[
        float, msgspec.Meta(gt=0, le=365, description="back in stock: viewed within")
    ] = 30.0


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Text
    channels: Annotated[list[CampaignChannel], msgspec.Meta(min_length=1, max_length=7)]
    audience_id: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None
    audience: dict[str, Any] | None = None  # inline rules, as for a saved audience
    templates: dict[CampaignChannel, TemplateName] = {}
    variants: Annotated[list[Variant], msgspec.Meta(max_length=8)] = []
    items: Annotated[list[ItemRef], msgspec.Meta(max_length=50)] = []  # featured in every message
    recommendations: Annotated[int, msgspec.Meta(ge=0, le=20)] = 6
    holdout: Annotated[float, msgspec.Meta(ge=0, le=0.5, description="share kept out, for the lift")] = 0.1
    send_at: datetime | None = None
    cron: Annotated[str, msgspec.Meta(min_length=9, max_length=128, pattern=NO_NUL)] | None = None
    send_window: SendWindow | None = None
    timezone: ZoneName = "UTC"  # for recipients without a time zone of their own
    frequency_cap: bool = True  # counts against, and is held back by, the global cap
    error_budget: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    attribution_days: Annotated[int, msgspec.Meta(ge=1, le=60)] = 5
    trigger: Trigger | None = None  # a triggered flow instead of a one-off or recurring send
    locale: Annotated[
        str, msgspec.Meta(max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$")
    ] = "en"

    def user_channels(self) -> list[str]:
        return [c for c in self.channels if c in USER_CHANNELS]

    def social_channels(self) -> list[str]:
        return [c for c in self.channels if c in SOCIAL_CHANNELS]

    def template_for(self, channel: str, variant: str) -> str:
        for v in self.variants:
            if v.name == variant and channel in v.templates:
                return v.templates[channel]
        if channel in self.templates:
            return self.templates[channel]
        if self.trigger is not None and channel in USER_CHANNELS:
            return FLOW_TEMPLATES[self.trigger.type]
        return DEFAULT_TEMPLATES.get(channel, DEFAULT_SOCIAL_TEMPLATE)

    def zone(self) -> ZoneInfo:
        """The zone for recipients without one of their own (UTC if the name is not a zone)."""
        return time_zone(self.timezone) or ZoneInfo("UTC")

    def check(self, now: datetime) -> None:
        """Problems msgspec cannot see: audience, schedule, variants, time zone, channels."""
        problems: list[FieldProblem] = []
        if len(set(self.channels)) != len(self.channels):
            problems.append(FieldProblem("channels", "a channel is listed twice"))
        if self.trigger is not None:
            if self.social_channels():
                problems.append(
                    FieldProblem("channels", "triggered flows send email or push, not social posts")
                )
            if self.send_at is not None or self.cron is not None:
                problems.append(FieldProblem("trigger", "a flow runs from events: no send_at or cron"))
        elif self.user_channels() and self.audience_id is None and self.audience is None:
            problems.append(
                FieldProblem("audience", "email and push campaigns need an audience_id or audience rules")
            )
        if self.audience_id is not None and self.audience is not None:
            problems.append(FieldProblem("audience", "give audience_id or audience rules, not both"))
        for channel in self.templates:
            if channel not in self.channels:
                problems.append(FieldProblem(f"templates.{channel}", "not one of the campaign's channels"))
        if self.send_at is not None and self.cron is not None:
            problems.append(FieldProblem("send_at", "give send_at or cron, not both"))
        if self.send_at is not None and self.send_at.tzinfo is None:
            problems.append(FieldProblem("send_at", "needs a time zone offset (e.g. 2026-12-24T09:00:00Z)"))
        elif self.send_at is not None and self.send_at < now - timedelta(minutes=1):
            problems.append(FieldProblem("send_at", f"{self.send_at.isoformat()} is in the past"))
        if self.cron is not None and not croniter.is_valid(self.cron):
            problems.append(
                FieldProblem("cron", f"{self.cron!r} is not a cron expression (e.g. '0 9 * * 1')")
            )
        elif self.cron is not None:
            try:
                next_cron_slot(self.cron, now)
            except (CroniterError, ValueError, OverflowError):
                problems.append(FieldProblem("cron", f"{self.cron!r} never comes round"))
        if self.variants:
            names = [v.name for v in self.variants]
            if len(set(names)) != len(names):
                problems.append(FieldProblem("variants", "variant names must differ"))
            if abs(sum(v.share for v in self.variants) - 1.0) > 1e-6:
                problems.append(FieldProblem("variants", "the shares must add up to 1"))
            for n, v in enumerate(self.variants):
                for channel in v.templates:
                    if channel not in self.channels:
                        problems.append(
                            FieldProblem(
                                f"variants[{n}].templates.{channel}", "not one of the campaign's channels"
                            )
                        )
        if time_zone(self.timezone) is None:
            problems.append(FieldProblem("timezone", f"{self.timezone!r} is not an IANA time zone"))
        if self.send_window is not None and self.send_window.start == self.send_window.end:
            problems.append(FieldProblem("send_window", "start and end must differ"))
        if problems:
            raise InvalidInput.from_problems("the campaign is not valid", problems)

    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants] or [MAIN_VARIANT]


def decode(settings: dict[str, Any]) -> CampaignIn:
    return msgspec.convert(settings, CampaignIn)


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for these parts: the same user lands in the same group every run."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(campaign_id: int, user_id: str, share: float) -> bool:
    return share > 0 and unit_hash("holdout", campaign_id, user_id) < share


def variant_of(campaign: CampaignIn, campaign_id: int, user_id: str) -> str:
    if not campaign.variants:
        return MAIN_VARIANT
    point = unit_hash("variant", campaign_id, user_id)
    total = 0.0
    for v in campaign.variants:
        total += v.share
        if point < total:
            return v.name
    return campaign.variants[-1].name


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def next_send_time(window: SendWindow | None, zone: ZoneInfo, now: datetime) -> datetime:
    """`now` when it is inside the recipient's send window, else the window's next opening (UTC)."""
    if window is None:
        return now
    start, end = _clock(window.start), _clock(window.end)
    local = now.astimezone(zone)
    clock = local.time()
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if inside:
        return now
    opening = datetime.combine(local.date(), start, tzinfo=zone)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=zone)
    return opening.astimezone(UTC)


def next_cron_slot(cron: str, after: datetime) -> datetime:
    slot: datetime = croniter(cron, after.astimezone(UTC)).get_next(datetime)
    return slot.astimezone(UTC)
