"""Campaigns as the API, the command line and the worker use them."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns import audiences as rules
from service.campaigns import report as reports
from service.campaigns.definition import CampaignIn
from service.campaigns.dispatch import Dispatcher
from service.campaigns.flows import Flows
from service.campaigns.planner import Planner
from service.campaigns.runner import CampaignRunner
from service.campaigns.store import Campaign, CampaignStore
from service.errors import BadParameter, InvalidInput
from service.messaging.compose import Recipient, Rendered
from service.messaging.deliveries import Delivery, NewDelivery
from service.messaging.service import Messaging
from service.records.users import CONSENT_CHANNELS
from service.security.crypto import PersonalDataCipher
from service.serving.state import ServingState
from service.settings import Settings
from service.storage.tables import user_consents, users


@dataclass(frozen=True)
class Estimate:
    users: int
    with_consent: dict[str, int]


@dataclass(frozen=True)
class DryRun:
    audience: int
    treated: dict[str, int]  # per channel
    holdout: int
    skipped: dict[str, int]  # reason -> recipients (per channel)
    delayed_by_send_window: int


class Campaigns:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        cipher: PersonalDataCipher,
        messaging: Messaging,
        serving: ServingState,
    ) -> None:
        self.settings = settings.campaigns
        self.engine = engine
        self.cipher = cipher
        self.messaging = messaging
        self.serving = serving
        self.store = CampaignStore(engine)
        self.planner = Planner(
            engine, cipher, self.store, messaging.store, messaging.composer, serving, settings.campaigns
        )
        self.dispatcher = Dispatcher(engine, cipher, self.store, messaging.composer, settings.campaigns)
        self.flows = Flows(engine, self.store, self.planner, messaging.composer.answers)
        self.runner = CampaignRunner(self.store, self.planner, self.flows, settings.campaigns.tick_seconds)

    def attach(self) -> None:
        """Let the delivery loop render campaign messages and watch their error budgets."""
        self.messaging.prepare = self.dispatcher.prepare
        self.messaging.after_batch = self.dispatcher.watch

    # -- audiences -----------------------------------------------------------------------------

    async def estimate(self, tree: dict[str, Any]) -> Estimate:
        """How many users the rules select now, and how many of them have consent per channel."""
        condition = await self.planner.compile(rules.parse(tree))
        async with self.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(users).where(condition))
            ).scalar_one()
            consent = await conn.execute(
                select(user_consents.c.channel, func.count())
                .where(
                    user_consents.c.granted.is_(True),
                    user_consents.c.user_id.in_(select(users.c.user_id).where(condition)),
                )
                .group_by(user_consents.c.channel)
            )
            counts = {channel: int(n) for channel, n in consent}
        return Estimate(int(total), {c: counts.get(c, 0) for c in CONSENT_CHANNELS})

    # -- before launch -------------------------------------------------------------------------

    async def dry_run(self, campaign_id: int) -> DryRun:
        """Who the next run would reach, hold out and skip (and why), without writing anything."""
        campaign = await self.store.get(campaign_id)
        definition = campaign.definition
        treated: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        holdout_users: set[str] = set()
        delayed = audience = 0
        if definition.user_channels():
            rule = await self.store.rules_of(definition)
            assert rule is not None
            condition = await self.planner.compile(rule)
            now = datetime.now(UTC)
            chosen = await self.planner.audience_chunk(condition, None)
            while chosen:
                audience += len(chosen)
                for d in await self.planner.decisions(campaign.id, definition, chosen, now):
                    if d.outcome == "treated":
                        treated[d.channel] += 1
                        delayed += int(d.not_before is not None and d.not_before > now)
                    elif d.outcome == "holdout":
                        holdout_users.add(d.user_id)
                    else:
                        skipped[d.reason or "unknown"] += 1
                chosen = await self.planner.audience_chunk(condition, chosen[-1])
        for channel in definition.social_channels():
            treated[channel] += 1
        return DryRun(audience, dict(treated), len(holdout_users), dict(skipped), delayed)

    async def preview(self, campaign_id: int, user_id: str, channel: str, variant: str | None) -> Rendered:
        """The message `user_id` would get (StrictUndefined: a missing value fails here, named)."""
        campaign = await self.store.get(campaign_id)
        definition = campaign.definition
        chosen = self._variant(definition, variant)
        if channel not in definition.channels:
            raise BadParameter("channel", f"the campaign sends on {', '.join(definition.channels)}")
        template = definition.template_for(channel, chosen)
        if channel not in ("email", "push"):
            return await self.messaging.composer.social(
                template,
                channel,
                key=f"preview:{campaign_id}",
                locale=definition.locale,
                item_ids=list(definition.items),
            )
        recipient = await self.messaging.recipient(user_id)
        return await self.messaging.composer.for_user(
            recipient,
            template,
            channel,
            key=f"preview:{campaign_id}",
            item_ids=list(definition.items),
            recommendations=definition.recommendations,
            campaign={"id": campaign_id, "name": campaign.name, "variant": chosen},
        )

    @staticmethod
    def _variant(definition: CampaignIn, variant: str | None) -> str:
        names = definition.variant_names()
        if variant is None:
            return names[0]
        if variant not in names:
            raise BadParameter("variant", f"{variant!r} is not one of: {', '.join(names)}")
        return variant

    async def test_send(
        self, campaign_id: int, addresses: list[str], user_id: str | None, variant: str | None
    ) -> list[Delivery]:
        """Send the email, as `user_id` (or a sample recipient) would get it, to staff addresses."""
        campaign = await self.store.get(campaign_id)
        definition = campaign.definition
        if "email" not in definition.channels:
            raise InvalidInput(
                "test sends are for email campaigns",
                extra=[{"key": "addresses", "message": "not an email campaign"}],
            )
        chosen = self._variant(definition, variant)
        self.messaging.require_channel("email")
        if user_id is not None:
            recipient = await self.messaging.recipient(user_id)
        else:
            recipient = Recipient("test-recipient", None, (), definition.locale, None, {"first_name": "Sam"})
        sent = []
        for address in addresses:
            key = f"test:{campaign_id}:{uuid.uuid4().hex}"
            rendered = await self.messaging.composer.for_user(
                recipient,
                definition.template_for("email", chosen),
                "email",
                key=key,
                item_ids=list(definition.items),
                recommendations=definition.recommendations,
                campaign={"id": campaign_id, "name": campaign.name, "variant": chosen},
                address=address,
            )
            delivery, _ = await self.messaging.store.add(
                NewDelivery(key, "message", "email", rendered.payload, template=rendered.template)
            )
            sent.append(await self.messaging.attempt_now(delivery))
        return sent

    async def report(self, campaign_id: int) -> dict[str, Any]:
        campaign = await self.store.get(campaign_id)
        return reports.as_dict(await reports.build(self.engine, campaign))

    async def launch(self, campaign_id: int) -> Campaign:
        """Check that every template the campaign uses exists, then launch it."""
        campaign = await self.store.get(campaign_id)
        definition = campaign.definition
        for channel in definition.channels:
            self.messaging.require_channel(channel)
            kind = channel if channel in ("email", "push") else "social"
            for variant in definition.variant_names():
                await self.messaging.templates.get(
                    kind, definition.template_for(channel, variant), locale=None
                )
        if definition.items:
            self.messaging.composer.featured(list(definition.items))
        return await self.store.launch(campaign_id)
