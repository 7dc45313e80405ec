"""Planning a campaign run: one row per recipient before anything is sent.

The audience is walked in user_id order, `plan_chunk` users per transaction. For each user and
each of the campaign's user channels (email, push) the planner decides, in this order:

    skipped   no_address | no_consent | suppressed | capped (the global frequency cap)
    holdout   a stable share of the eligible, kept out to measure the lift
    treated   a `deliveries` row (key campaign:ID:RUN:USER:CHANNEL, unique), due at the opening
              of the user's send window in their time zone; rendered when a worker claims it

and writes every decision to `campaign_recipients` in the same transaction as the deliveries and
the new `plan_cursor`. The cursor moves only if it still holds the value this planner read, so
two planners never plan the same users, and a planner killed mid-chunk leaves nothing behind:
the next one plans that chunk again from the same cursor. Social channels get one post each,
rendered when the run starts.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns import audiences as rules
from service.campaigns.definition import (
    CampaignIn,
    in_holdout,
    next_send_time,
    variant_of,
)
from service.campaigns.store import Campaign, CampaignStore
from service.messaging.compose import Composer, Recipient, load_recipients, time_zone
from service.messaging.deliveries import DeliveryStore, NewDelivery
from service.security.crypto import PersonalDataCipher
from service.serving.state import ServingState
from service.settings import CampaignSettings
from service.storage.tables import campaign_recipients, campaigns, deliveries, users

log = logging.getLogger(__name__)
CAPPED_STATUSES = ("pending", "sending", "held", "sent", "unknown")
CONSENT_OF = {"email": "email", "push": "push"}


class PlanRaced(Exception):
    """Another planner moved the cursor first (or the campaign was paused): this chunk is dropped."""


@dataclass(frozen=True)
class Decision:
    user_id: str
    channel: str
    variant: str
    outcome: str  # treated | holdout | skipped
    reason: str | None = None
    not_before: datetime | None = None


def delivery_key(campaign_id: int, run: int, user_id: str | None, channel: str) -> str:
    return f"campaign:{campaign_id}:{run}:{user_id or '-'}:{channel}"


def campaign_of_key(key: str) -> int | None:
    """The campaign id in a delivery key (`campaign:12:…`), or None for other messages."""
    head, _, rest = key.partition(":")
    number = rest.partition(":")[0]
    return int(number) if head == "campaign" and number.isdigit() else None


def decide(
    campaign_id: int,
    definition: CampaignIn,
    recipient: Recipient,
    channel: str,
    *,
    recent: int,
    cap: int,
    now: datetime,
) -> Decision:
    """What becomes of one recipient on one channel (see the module docstring for the order)."""
    variant = variant_of(definition, campaign_id, recipient.user_id)
    address = recipient.email if channel == "email" else recipient.push_tokens
    reason = None
    if not address:
        reason = "no_address"
    elif recipient.consents.get(CONSENT_OF[channel]) is not True:
        reason = "no_consent"
    elif channel == "email" and recipient.suppressed:
        reason = "suppressed"
    elif definition.frequency_cap and cap and recent >= cap:
        reason = "capped"
    if reason is not None:
        return Decision(recipient.user_id, channel, variant, "skipped", reason)
    if in_holdout(campaign_id, recipient.user_id, definition.holdout):
        return Decision(recipient.user_id, channel, variant, "holdout")
    zone = time_zone(recipient.timezone) or definition.zone()
    when = next_send_time(definition.send_window, zone, now)
    return Decision(recipient.user_id, channel, variant, "treated", not_before=when)


class Planner:
    def __init__(
        self,
        engine: AsyncEngine,
        cipher: PersonalDataCipher,
        store: CampaignStore,
        outbox: DeliveryStore,
        composer: Composer,
        serving: ServingState,
        settings: CampaignSettings,
    ) -> None:
        self.engine = engine
        self.cipher = cipher
        self.store = store
        self.outbox = outbox
        self.composer = composer
        self.serving = serving
        self.settings = settings
        self._compiled: dict[tuple[int, int], Any] = {}

    async def compile(self, rule: rules.Rule) -> Any:
        """`rule` as one SQL condition on users, as of now (affinity reads the served model)."""
        compiler = await rules.compiler(self.engine, self.serving.model, rule)
        return compiler.condition(rule)

    async def condition(self, campaign: Campaign) -> Any:
        """The audience of the run being planned, compiled once for the whole run."""
        key = (campaign.id, campaign.run)
        if key not in self._compiled:
            rule = await self.store.rules_of(campaign.definition)
            assert rule is not None
            self._compiled = {key: await self.compile(rule)}
        return self._compiled[key]

    async def audience_chunk(self, condition: Any, after: str | None) -> list[str]:
        """The next `plan_chunk` user ids the condition selects, after `after` in id order."""
        query = select(users.c.user_id).where(condition)
        if after is not None:
            query = query.where(users.c.user_id > after)
        query = query.order_by(users.c.user_id).limit(self.settings.plan_chunk)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def plan_step(self, campaign: Campaign) -> bool:
        """Plan the next chunk of the current run; False once the run is fully planned."""
        definition = campaign.definition
        now = datetime.now(UTC)
        social = await self._social_posts(campaign) if campaign.plan_cursor is None else []
        chosen: list[str] = []
        if definition.user_channels():
            chosen = await self.audience_chunk(await self.condition(campaign), campaign.plan_cursor)
        decisions = await self.decisions(campaign.id, definition, chosen, now) if chosen else []
        finished = len(chosen) < self.settings.plan_chunk
        cursor = chosen[-1] if chosen else (campaign.plan_cursor or "")
        await self._write(campaign, decisions, social, cursor, finished, now)
        return not finished

    async def decisions(
        self, campaign_id: int, definition: CampaignIn, chosen: list[str], now: datetime
    ) -> list[Decision]:
        """What becomes of each of `chosen` on each of the campaign's user channels."""
        recipients = await load_recipients(self.engine, self.cipher, chosen)
        recent = await self.recent_messages(chosen, now)
        cap = self.settings.frequency_cap
        decisions = []
        for recipient in recipients:
            for channel in definition.user_channels():
                d = decide(
                    campaign_id,
                    definition,
                    recipient,
                    channel,
                    recent=recent[recipient.user_id],
                    cap=cap,
                    now=now,
                )
                if d.outcome == "treated" and definition.frequency_cap:
                    recent[recipient.user_id] += 1
                decisions.append(d)
        return decisions

    async def recent_messages(self, chosen: list[str], now: datetime) -> Counter[str]:
        """Each user's marketing messages within the frequency cap's period."""
        recent: Counter[str] = Counter()
        if not self.settings.frequency_cap:
            return recent
        since = now - timedelta(days=self.settings.frequency_days)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.user_id, func.count())
                .where(
                    deliveries.c.user_id.in_(chosen),
                    deliveries.c.kind == "campaign",
                    deliveries.c.created_at >= since,
                    deliveries.c.status.in_(CAPPED_STATUSES),
                )
                .group_by(deliveries.c.user_id)
            )
            recent.update({uid: int(n) for uid, n in rows})
        return recent

    async def _social_posts(self, campaign: Campaign) -> list[NewDelivery]:
        definition = campaign.definition
        posts = []
        for channel in definition.social_channels():
            key = delivery_key(campaign.id, campaign.run, None, channel)
            rendered = await self.composer.social(
                definition.template_for(channel, definition.variant_names()[0]),
                channel,
                key=key,
                locale=definition.locale,
                item_ids=list(definition.items),
            )
            posts.append(
                NewDelivery(
                    key,
                    "campaign",
                    channel,
                    rendered.payload,
                    template=rendered.template,
                    campaign_id=campaign.id,
                )
            )
        return posts

    def rows(
        self,
        campaign_id: int,
        run: int,
        definition: CampaignIn,
        decisions: list[Decision],
        now: datetime,
        items: dict[str, list[str]] | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(campaign_recipients rows, deliveries rows) for `decisions` (`items`: featured per user)."""
        recipients = [
            {
                "campaign_id": campaign_id,
                "run": run,
                "user_id": d.user_id,
                "channel": d.channel,
                "variant": d.variant,
                "outcome": d.outcome,
                "reason": d.reason,
                "planned_at": now,
            }
            for d in decisions
        ]
        outgoing = []
        for d in decisions:
            if d.outcome != "treated":
                continue
            template = definition.template_for(d.channel, d.variant)
            payload: dict[str, Any] = {
                "render": True,
                "campaign": campaign_id,
                "run": run,
                "variant": d.variant,
                "template": template,
            }
            if items is not None:
                payload["items"] = items.get(d.user_id, [])
            delivery = NewDelivery(
                delivery_key(campaign_id, run, d.user_id, d.channel),
                "campaign",
                d.channel,
                payload,
                user_id=d.user_id,
                template=template,
                not_before=d.not_before,
                campaign_id=campaign_id,
            )
            outgoing.append(self.outbox.values(delivery, now))
        return recipients, outgoing

    async def _write(
        self,
        campaign: Campaign,
        decisions: list[Decision],
        social: list[NewDelivery],
        cursor: str,
        finished: bool,
        now: datetime,
    ) -> None:
        recipients, outgoing = self.rows(campaign.id, campaign.run, campaign.definition, decisions, now)
        outgoing += [self.outbox.values(d, now) for d in social]
        c = campaigns.c
        previous = (
            c.plan_cursor.is_(None) if campaign.plan_cursor is None else c.plan_cursor == campaign.plan_cursor
        )
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(campaigns)
                .where(c.id == campaign.id, c.run == campaign.run, c.status == "running", previous)
                .values(plan_cursor=cursor, planned=finished, updated_at=now)
            )
            if moved.rowcount != 1:
                raise PlanRaced(f"campaign {campaign.id}: planned by another worker, or paused")
            if recipients:
                await conn.execute(insert(campaign_recipients), recipients)
            if outgoing:
                await conn.execute(insert(deliveries), outgoing)
