"""Triggered flows: messages fired by what users do, a while after they did it.

    abandoned_cart      added to the cart, no purchase of it `after_hours` later
    browse_abandonment  viewed one item `min_views` times or more, no purchase of it
    back_in_stock       an item the user viewed, wished for or carted in the last
                        `lookback_days` is available again
    post_purchase       bought something: what is bought together with it (cross-sell)

A running flow is evaluated on every campaign tick over the events between its watermark and
`now - after_hours`, so a cart abandoned at 10:00 with a 4-hour wait is mailed soon after 14:00.
Each evaluation that fires is one run of the campaign: its recipients go through the same
decisions as a campaign's (address, consent, suppression, frequency cap, holdout, send window),
with the items the trigger is about featured in the message. A user messaged by the flow within
`dedupe_days` is not messaged again. The watermark moves in the same transaction as the new
rows, and only if the run number is still the one read, so two workers never fire twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns.definition import Trigger
from service.campaigns.planner import Planner
from service.campaigns.store import Campaign, CampaignStore
from service.serving.answers import Answers, Filters
from service.storage.tables import campaign_recipients, campaigns, deliveries, events, users

log = logging.getLogger(__name__)
MAX_ITEMS = 6
INTEREST = ("view", "wishlist", "add_to_cart")


class Flows:
    def __init__(self, engine: AsyncEngine, store: CampaignStore, planner: Planner, answers: Answers) -> None:
        self.engine = engine
        self.store = store
        self.planner = planner
        self.answers = answers

    async def evaluate(self, campaign: Campaign) -> int:
        """Fire the flow for what happened since its watermark; how many were messaged."""
        trigger = campaign.definition.trigger
        assert trigger is not None
        now = datetime.now(UTC)
        state = dict(campaign.trigger_state or {})
        since = _moment(state.get("watermark")) or campaign.run_started_at or now
        upto = now - timedelta(hours=trigger.after_hours)
        if trigger.type == "back_in_stock":
            found, state["unavailable"] = await self._restocked(trigger, state.get("unavailable"), now)
        elif upto > since:
            found = await self._found(trigger, since, upto)
            state["watermark"] = upto.isoformat()
        else:
            return 0
        found = await self._wanted(campaign, found, now - timedelta(days=trigger.dedupe_days))
        return await self._fire(campaign, found, state, now)

    async def _found(self, trigger: Trigger, since: datetime, upto: datetime) -> dict[str, list[str]]:
        e = events.c
        window = e.occurred_at > since, e.occurred_at <= upto
        async with self.engine.connect() as conn:
            if trigger.type == "abandoned_cart":
                rows = await conn.execute(
                    select(e.user_id, e.item_id, func.min(e.occurred_at))
                    .where(e.event == "add_to_cart", *window)
                    .group_by(e.user_id, e.item_id)
                )
            elif trigger.type == "browse_abandonment":
                recent = since - timedelta(days=1)  # the views that add up may start a day before
                rows = await conn.execute(
                    select(e.user_id, e.item_id, func.min(e.occurred_at))
                    .where(e.event == "view", e.occurred_at > recent, e.occurred_at <= upto)
                    .group_by(e.user_id, e.item_id)
                    .having(func.count() >= trigger.min_views, func.max(e.occurred_at) > since)
                )
            else:  # post_purchase
                rows = await conn.execute(
                    select(e.user_id, e.item_id, func.min(e.occurred_at))
                    .where(e.event == "purchase", *window)
                    .group_by(e.user_id, e.item_id)
                )
            interest = [(uid, item, at) for uid, item, at in rows]
            if trigger.type == "post_purchase":
                return self._cross_sell(interest)
            return await self._not_bought(conn, interest)

    async def _not_bought(self, conn: Any, interest: list[tuple[str, str, datetime]]) -> dict[str, list[str]]:
        """Per user, the items of interest they have not bought since."""
        found: dict[str, list[str]] = defaultdict(list)
        users_ = sorted({uid for uid, _, _ in interest})
        bought: dict[tuple[str, str], datetime] = {}
        for start in range(0, len(users_), 1_000):
            rows = await conn.execute(
                select(events.c.user_id, events.c.item_id, func.max(events.c.occurred_at))
                .where(events.c.user_id.in_(users_[start : start + 1_000]), events.c.event == "purchase")
                .group_by(events.c.user_id, events.c.item_id)
            )
            bought.update({(uid, item): at for uid, item, at in rows})
        for uid, item, at in interest:
            last = bought.get((uid, item))
            if (last is None or last < at) and len(found[uid]) < MAX_ITEMS:
                found[uid].append(item)
        return dict(found)

    def _cross_sell(self, purchases: list[tuple[str, str, datetime]]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for uid, item, _ in purchases:
            answer = self.answers.similar(
                item, MAX_ITEMS, Filters(excluded={item}), ("co_purchase", "item_knn")
            )
            picks = [p.item.item_id for p in answer.picks] if answer is not None else []
            if picks and uid not in found:
                found[uid] = picks
        return found

    async def _restocked(
        self, trigger: Trigger, previous: list[str] | None, now: datetime
    ) -> tuple[dict[str, list[str]], list[str]]:
        """Who wanted the items available now that were not at the last evaluation."""
        catalog = self.answers.state.catalog
        await catalog.refresh(self.engine)
        unavailable = sorted(i for i, info in catalog.items.items() if not info.in_stock(None))
        if previous is None:
            return {}, unavailable
        back = sorted(set(previous) - set(unavailable))
        back = [i for i in back if (info := catalog.get(i)) is not None and info.in_stock(None)]
        if not back:
            return {}, unavailable
        since = now - timedelta(days=trigger.lookback_days)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(events.c.user_id, events.c.item_id, func.max(events.c.occurred_at))
                .where(
                    events.c.item_id.in_(back), events.c.event.in_(INTEREST), events.c.occurred_at >= since
                )
                .group_by(events.c.user_id, events.c.item_id)
            )
            return await self._not_bought(conn, [(u, i, at) for u, i, at in rows]), unavailable

    async def _wanted(
        self, campaign: Campaign, found: dict[str, list[str]], since: datetime
    ) -> dict[str, list[str]]:
        """Only users in the campaign's audience (if it has one), not messaged by it since `since`."""
        if not found:
            return found
        chosen = sorted(found)
        keep = set(chosen)
        rule = await self.store.rules_of(campaign.definition)
        condition = await self.planner.compile(rule) if rule is not None else None
        async with self.engine.connect() as conn:
            for start in range(0, len(chosen), 1_000):
                part = chosen[start : start + 1_000]
                if condition is not None:
                    inside = set(
                        (
                            await conn.execute(
                                select(users.c.user_id).where(condition, users.c.user_id.in_(part))
                            )
                        ).scalars()
                    )
                    keep -= set(part) - inside
                recent = await conn.execute(
                    select(campaign_recipients.c.user_id).where(
                        campaign_recipients.c.campaign_id == campaign.id,
                        campaign_recipients.c.user_id.in_(part),
                        campaign_recipients.c.outcome != "skipped",
                        campaign_recipients.c.planned_at >= since,
                    )
                )
                keep -= set(recent.scalars())
        return {uid: found[uid] for uid in chosen if uid in keep}

    async def _fire(
        self, campaign: Campaign, found: dict[str, list[str]], state: dict[str, Any], now: datetime
    ) -> int:
        run = campaign.run + 1 if found else campaign.run
        definition = campaign.definition
        decisions = await self.planner.decisions(campaign.id, definition, sorted(found), now) if found else []
        recipients, outgoing = self.planner.rows(campaign.id, run, definition, decisions, now, items=found)
        c = campaigns.c
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(campaigns)
                .where(c.id == campaign.id, c.run == campaign.run, c.status == "running")
                .values(run=run, trigger_state=state, planned=True, updated_at=now)
            )
            if moved.rowcount != 1:
                return 0  # another worker evaluated it first, or it was paused
            if recipients:
                await conn.execute(insert(campaign_recipients), recipients)
            if outgoing:
                await conn.execute(insert(deliveries), outgoing)
        if outgoing:
            log.info("campaign %d (flow): %d messages", campaign.id, len(outgoing))
        return len(outgoing)


def _moment(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None
