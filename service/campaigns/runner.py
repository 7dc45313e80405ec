"""What every `shopcast worker` does for campaigns, every `tick_seconds`.

1. scheduled campaigns whose run is due start it (one worker wins the conditional UPDATE);
2. running campaigns not fully planned are planned, chunk by chunk (see `planner`);
3. running campaigns fully planned with nothing left to send complete (a cron campaign is
   scheduled for its next slot instead);
4. running flows (triggered campaigns) are evaluated over the events since their watermark.

Sending is the delivery loop's job (`Sender.run`), which claims the planned rows like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from service.campaigns.flows import Flows
from service.campaigns.planner import Planner, PlanRaced
from service.campaigns.store import CampaignStore
from service.errors import ShopcastError

log = logging.getLogger(__name__)


class CampaignRunner:
    def __init__(self, store: CampaignStore, planner: Planner, flows: Flows, tick_seconds: float) -> None:
        self.store = store
        self.planner = planner
        self.flows = flows
        self.tick_seconds = tick_seconds

    async def tick(self, stop: asyncio.Event | None = None) -> None:
        now = datetime.now(UTC)
        for campaign in await self.store.with_status("scheduled"):
            if (
                campaign.next_run_at is not None
                and campaign.next_run_at <= now
                and await self.store.start_run(campaign)
            ):
                log.info("campaign %d: run %d started", campaign.id, campaign.run + 1)
        for campaign in await self.store.with_status("running"):
            if campaign.definition.trigger is not None:  # a flow runs until paused or cancelled
                await self.flows.evaluate(campaign)
                continue
            if campaign.planned:
                if await self.store.finish_run(campaign):
                    log.info("campaign %d: run %d finished", campaign.id, campaign.run)
                continue
            await self._plan(campaign.id, stop)

    async def _plan(self, campaign_id: int, stop: asyncio.Event | None) -> None:
        while stop is None or not stop.is_set():
            campaign = await self.store.get(campaign_id)
            if campaign.status != "running" or campaign.planned:
                return
            try:
                more = await self.planner.plan_step(campaign)
            except PlanRaced:
                return
            except ShopcastError as exc:  # e.g. the saved audience was deleted, a featured item gone
                reason = f"paused itself: planning failed: {exc.detail}"
                log.warning("campaign %d %s", campaign_id, reason)
                with contextlib.suppress(ShopcastError):
                    await self.store.pause(campaign_id, reason)
                return
            if not more:
                log.info("campaign %d: run %d planned", campaign_id, campaign.run)
                return

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; a failing tick (database away) is logged and retried."""
        while not stop.is_set():
            try:
                await self.tick(stop)
            except Exception as exc:
                log.warning("campaign tick: %s: %s; retrying", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_seconds)
