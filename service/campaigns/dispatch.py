"""Campaign messages at send time: rendered when claimed, checked once more, watched for failures.

`prepare` is the delivery loop's hook for a claimed batch. Campaign rows carry only what to
render (campaign, variant, template); here each recipient is loaded (one query for the batch),
their consent and address checked again (an unsubscribe since planning wins), and the message
rendered with fresh recommendations. A recipient the template fails for is `skipped` with the
reason, and the campaign goes on.

`watch` is the hook after a batch is recorded: when a campaign's failures (permanent, or
retries pending) reach its error budget, the campaign pauses itself, so an SMTP server that
refuses everything does not burn the whole audience.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns.definition import CampaignIn, decode
from service.campaigns.planner import CONSENT_OF
from service.campaigns.store import CampaignStore
from service.errors import ShopcastError
from service.messaging.compose import Composer, Recipient, load_recipients
from service.messaging.deliveries import Attempt, Delivery
from service.security.crypto import PersonalDataCipher
from service.settings import CampaignSettings
from service.storage.tables import campaigns, deliveries

log = logging.getLogger(__name__)
DEFINITION_CACHE_SECONDS = 5.0


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        cipher: PersonalDataCipher,
        store: CampaignStore,
        composer: Composer,
        settings: CampaignSettings,
    ) -> None:
        self.engine = engine
        self.cipher = cipher
        self.store = store
        self.composer = composer
        self.settings = settings
        self._definitions: dict[int, tuple[float, str, CampaignIn]] = {}

    async def _definition(self, campaign_id: int) -> tuple[str, CampaignIn] | None:
        cached = self._definitions.get(campaign_id)
        if cached is not None and time.monotonic() - cached[0] < DEFINITION_CACHE_SECONDS:
            return cached[1], cached[2]
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(campaigns.c.name, campaigns.c.settings).where(campaigns.c.id == campaign_id)
                )
            ).first()
        if row is None:
            return None
        found = (row.name, decode(row.settings))
        self._definitions[campaign_id] = (time.monotonic(), *found)
        return found

    async def prepare(self, batch: list[Delivery]) -> tuple[list[Delivery], list[Attempt]]:
        lazy = [d for d in batch if d.payload.get("render")]
        if not lazy:
            return batch, []
        ready = [d for d in batch if not d.payload.get("render")]
        skipped: list[Attempt] = []
        user_ids = sorted({d.user_id for d in lazy if d.user_id})
        recipients = {r.user_id: r for r in await load_recipients(self.engine, self.cipher, user_ids)}
        for d in lazy:
            await asyncio.sleep(0)  # let the other batch's sends make progress between renders
            recipient = recipients.get(d.user_id or "")
            reason = self._still_wanted(d, recipient)
            if reason is None and recipient is not None:
                rendered, reason = await self._render(d, recipient)
                if rendered is not None:
                    ready.append(rendered)
                    continue
            skipped.append(Attempt(d, "skipped", reason))
        return ready, skipped

    @staticmethod
    def _still_wanted(d: Delivery, recipient: Recipient | None) -> str | None:
        if recipient is None:
            return "no_user: the user was erased after planning"
        if recipient.consents.get(CONSENT_OF.get(d.channel, d.channel)) is not True:
            return "no_consent: consent was withdrawn after planning"
        if d.channel == "email" and recipient.suppressed:
            return "suppressed: the address is on the suppression list"
        return None

    async def _render(self, d: Delivery, recipient: Recipient) -> tuple[Delivery | None, str]:
        campaign_id = int(d.payload["campaign"])
        found = await self._definition(campaign_id)
        if found is None:
            return None, "no_campaign: the campaign is gone"
        name, definition = found
        variant = str(d.payload.get("variant", "main"))
        try:
            rendered = await self.composer.for_user(
                recipient,
                str(d.payload["template"]),
                d.channel,
                key=d.key,
                item_ids=self._featured(d, definition),
                recommendations=definition.recommendations,
                campaign={"id": campaign_id, "name": name, "variant": variant},
            )
        except (TemplateError, ShopcastError) as exc:
            detail = exc.detail if isinstance(exc, ShopcastError) else f"{type(exc).__name__}: {exc}"
            return None, f"render_failed: {detail}"
        except (KeyError, TypeError, ValueError) as exc:  # a malformed row: skip it, keep the batch
            log.exception("campaign %d: delivery %d could not be rendered", campaign_id, d.id)
            return None, f"render_failed: {type(exc).__name__}"
        payload: dict[str, Any] = rendered.payload
        return dataclasses.replace(d, payload=payload), ""

    def _featured(self, d: Delivery, definition: CampaignIn) -> list[str]:
        """The campaign's items, or what a flow fired about (items gone from the catalog dropped)."""
        wanted = d.payload.get("items")
        if wanted is None:
            return list(definition.items)
        catalog = self.composer.answers.state.catalog
        return [i for i in wanted if catalog.get(i) is not None]

    # -- error budget --------------------------------------------------------------------------

    async def watch(self, results: list[Attempt]) -> None:
        """Pause campaigns whose failures in this batch push them over their error budget."""
        troubled = {
            r.delivery.campaign_id
            for r in results
            if r.delivery.campaign_id is not None and r.status in ("failed", "pending")
        }
        for campaign_id in sorted(c for c in troubled if c is not None):
            await self._judge(campaign_id)

    async def _judge(self, campaign_id: int) -> None:
        found = await self._definition(campaign_id)
        if found is None:
            return
        c = deliveries.c
        failing = or_(c.status == "failed", and_(c.status == "pending", c.attempts > 0))
        async with self.engine.connect() as conn:
            bad, good = (
                await conn.execute(
                    select(
                        func.sum(case((failing, 1), else_=0)),
                        func.sum(case((c.status == "sent", 1), else_=0)),
                    ).where(c.campaign_id == campaign_id)
                )
            ).one()
        bad, good = int(bad or 0), int(good or 0)
        budget = found[1].error_budget
        if bad < self.settings.error_budget_min or bad < budget * (bad + good):
            return
        reason = f"paused itself: {bad} of {bad + good} sends failed (error budget {budget:.0%})"
        try:
            await self.store.pause(campaign_id, reason)
        except ShopcastError:  # paused, cancelled or finished meanwhile
            return
        log.warning("campaign %d %s", campaign_id, reason)
