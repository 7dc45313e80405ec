"""Saved audiences and campaigns, and the campaign lifecycle.

    draft ──launch──▶ scheduled ──(its time)──▶ running ──(all sent)──▶ completed
      │                  │  ▲                     │  ▲                     (a cron campaign goes
      │                  ▼  │                     ▼  │                      back to scheduled)
      └───────────────▶ paused ◀─────────────────┘  │
    any but completed ──cancel──▶ cancelled          resume

Every transition is one conditional UPDATE (`WHERE status IN (…)`), so two staff members or
workers racing each other cannot both win. Pausing moves the campaign's pending deliveries to
`held` in the same transaction; resuming moves them back; cancelling cancels them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns import audiences as rules
from service.campaigns.definition import CampaignIn, decode, next_cron_slot
from service.errors import Conflict, NotFound
from service.storage.tables import audiences, campaigns, deliveries

EDITABLE = ("draft", "scheduled", "paused")
ACTIVE = ("scheduled", "running", "paused")


@dataclass(frozen=True)
class Audience:
    id: int
    name: str
    rules: dict[str, Any]
    description: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    status: str
    definition: CampaignIn
    audience_id: int | None
    next_run_at: datetime | None
    run: int
    run_started_at: datetime | None
    plan_cursor: str | None
    planned: bool
    status_reason: str | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    trigger_state: dict[str, Any] | None = None
    final_results: dict[str, Any] | None = None  # the analytics row, once it cannot change


def _campaign(row: Any) -> Campaign:
    m = row._mapping
    return Campaign(
        id=m["id"],
        name=m["name"],
        status=m["status"],
        definition=decode(m["settings"]),
        audience_id=m["audience_id"],
        next_run_at=m["next_run_at"],
        run=m["run"],
        run_started_at=m["run_started_at"],
        plan_cursor=m["plan_cursor"],
        planned=bool(m["planned"]),
        status_reason=m["status_reason"],
        completed_at=m["completed_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        trigger_state=m["trigger_state"],
        final_results=m["final_results"],
    )


def _audience(row: Any) -> Audience:
    m = row._mapping
    return Audience(m["id"], m["name"], m["rules"], m["description"], m["created_at"], m["updated_at"])


class CampaignStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- audiences -----------------------------------------------------------------------------

    async def save_audience(
        self, name: str, tree: dict[str, Any], description: str | None, audience_id: int | None = None
    ) -> Audience:
        rules.parse(tree)
        at = datetime.now(UTC)
        values = {"name": name, "rules": tree, "description": description, "updated_at": at}
        try:
            async with self.engine.begin() as conn:
                if audience_id is None:
                    audience_id = (
                        await conn.execute(
                            insert(audiences).values(**values, created_at=at).returning(audiences.c.id)
                        )
                    ).scalar_one()
                else:
                    changed = await conn.execute(
                        update(audiences).where(audiences.c.id == audience_id).values(**values)
                    )
                    if changed.rowcount == 0:
                        raise NotFound(f"no audience {audience_id}")
        except IntegrityError as exc:
            raise Conflict(f"an audience named {name!r} exists already") from exc
        return await self.audience(audience_id)

    async def audience(self, audience_id: int) -> Audience:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(audiences).where(audiences.c.id == audience_id))).first()
        if row is None:
            raise NotFound(f"no audience {audience_id}")
        return _audience(row)

    async def all_audiences(self) -> list[Audience]:
        async with self.engine.connect() as conn:
            return [_audience(r) for r in await conn.execute(select(audiences).order_by(audiences.c.id))]

    async def delete_audience(self, audience_id: int) -> None:
        async with self.engine.begin() as conn:
            users = await conn.execute(
                select(func.count()).where(
                    campaigns.c.audience_id == audience_id, campaigns.c.status.in_((*EDITABLE, "running"))
                )
            )
            if users.scalar_one():
                raise Conflict("campaigns that have not finished use this audience")
            gone = await conn.execute(delete(audiences).where(audiences.c.id == audience_id))
        if gone.rowcount == 0:
            raise NotFound(f"no audience {audience_id}")

    async def rules_of(self, campaign: CampaignIn) -> rules.Rule | None:
        if campaign.audience is not None:
            return rules.parse(campaign.audience, "audience")
        if campaign.audience_id is not None:
            return rules.parse((await self.audience(campaign.audience_id)).rules)
        return None

    # -- campaigns -----------------------------------------------------------------------------

    async def create(self, definition: CampaignIn) -> Campaign:
        await self._check(definition)
        at = datetime.now(UTC)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(campaigns)
                .values(
                    name=definition.name,
                    status="draft",
                    settings=msgspec.to_builtins(definition),
                    audience_id=definition.audience_id,
                    scheduled_at=definition.send_at,
                    cron=definition.cron,
                    run=0,
                    planned=False,
                    created_at=at,
                    updated_at=at,
                )
                .returning(campaigns.c.id)
            )
            campaign_id = int(result.scalar_one())
        return await self.get(campaign_id)

    async def replace(self, campaign_id: int, definition: CampaignIn) -> Campaign:
        """New settings for a campaign that has not started a run yet (draft or scheduled)."""
        await self._check(definition)
        current = await self.get(campaign_id)
        if current.status not in ("draft", "scheduled") or current.run > 0:
            raise Conflict(
                f"campaign {campaign_id} is {current.status}; only drafts and scheduled ones change"
            )
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(campaigns)
                .where(
                    campaigns.c.id == campaign_id, campaigns.c.status == current.status, campaigns.c.run == 0
                )
                .values(
                    name=definition.name,
                    settings=msgspec.to_builtins(definition),
                    audience_id=definition.audience_id,
                    scheduled_at=definition.send_at,
                    cron=definition.cron,
                    next_run_at=self._first_run(definition) if current.status == "scheduled" else None,
                    updated_at=datetime.now(UTC),
                )
            )
        if changed.rowcount == 0:
            raise Conflict(f"campaign {campaign_id} changed meanwhile; read it again")
        return await self.get(campaign_id)

    async def _check(self, definition: CampaignIn) -> None:
        definition.check(datetime.now(UTC))
        await self.rules_of(definition)  # an unknown audience is 404, bad rules 422

    async def get(self, campaign_id: int) -> Campaign:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(campaigns).where(campaigns.c.id == campaign_id))).first()
        if row is None:
            raise NotFound(f"no campaign {campaign_id}")
        return _campaign(row)

    async def all(self, status: str | None = None) -> list[Campaign]:
        query = select(campaigns).order_by(campaigns.c.id.desc())
        if status:
            query = query.where(campaigns.c.status == status)
        async with self.engine.connect() as conn:
            return [_campaign(r) for r in await conn.execute(query)]

    async def with_status(self, *statuses: str) -> list[Campaign]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(campaigns).where(campaigns.c.status.in_(statuses)).order_by(campaigns.c.id)
            )
            return [_campaign(r) for r in rows]

    # -- lifecycle -----------------------------------------------------------------------------

    @staticmethod
    def _first_run(definition: CampaignIn) -> datetime:
        now = datetime.now(UTC)
        if definition.cron:
            return next_cron_slot(definition.cron, now)
        return max(definition.send_at, now) if definition.send_at else now

    async def launch(self, campaign_id: int) -> Campaign:
        """Draft -> scheduled (its first run at send_at, the next cron slot, or now)."""
        current = await self.get(campaign_id)
        if current.status != "draft":
            raise Conflict(f"campaign {campaign_id} is {current.status}; only a draft can be launched")
        await self._check(current.definition)
        await self._move(
            campaign_id,
            ("draft",),
            "scheduled",
            next_run_at=self._first_run(current.definition),
            status_reason=None,
        )
        return await self.get(campaign_id)

    async def start_run(self, campaign: Campaign) -> bool:
        """Scheduled and due -> running, as run + 1; True for the one worker that wins."""
        at = datetime.now(UTC)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(campaigns)
                .where(
                    campaigns.c.id == campaign.id,
                    campaigns.c.status == "scheduled",
                    campaigns.c.run == campaign.run,
                    campaigns.c.next_run_at <= at,
                )
                .values(
                    status="running",
                    run=campaign.run + 1,
                    run_started_at=at,
                    plan_cursor=None,
                    planned=False,
                    updated_at=at,
                )
            )
        return result.rowcount == 1

    async def pause(self, campaign_id: int, reason: str | None = None) -> Campaign:
        await self._move(campaign_id, ("scheduled", "running"), "paused", status_reason=reason, hold=True)
        return await self.get(campaign_id)

    async def resume(self, campaign_id: int) -> Campaign:
        """Paused -> running (a run was under way) or scheduled (it was waiting for a run)."""
        current = await self.get(campaign_id)
        if current.status != "paused":
            raise Conflict(f"campaign {campaign_id} is {current.status}; only a paused campaign resumes")
        between_runs = (
            current.definition.cron is not None and current.planned and not await self.unsent(campaign_id)
        )
        target = "running" if current.run > 0 and not between_runs else "scheduled"
        await self._move(campaign_id, ("paused",), target, status_reason=None, release=True)
        return await self.get(campaign_id)

    async def cancel(self, campaign_id: int) -> Campaign:
        await self._move(
            campaign_id,
            ("draft", "scheduled", "running", "paused"),
            "cancelled",
            cancel=True,
            status_reason=None,
        )
        return await self.get(campaign_id)

    async def finish_run(self, campaign: Campaign) -> bool:
        """Running, fully planned and nothing left to send -> completed (or scheduled: cron)."""
        if not campaign.planned or await self.unsent(campaign.id):
            return False
        at = datetime.now(UTC)
        values: dict[str, Any] = {"updated_at": at}
        if campaign.definition.cron:
            values.update(status="scheduled", next_run_at=next_cron_slot(campaign.definition.cron, at))
        else:
            values.update(status="completed", completed_at=at)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(campaigns)
                .where(
                    campaigns.c.id == campaign.id,
                    campaigns.c.status == "running",
                    campaigns.c.run == campaign.run,
                )
                .values(**values)
            )
        return result.rowcount == 1

    async def unsent(self, campaign_id: int) -> int:
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            deliveries.c.campaign_id == campaign_id,
                            deliveries.c.status.in_(("pending", "sending", "held")),
                        )
                    )
                ).scalar_one()
            )

    async def _move(
        self,
        campaign_id: int,
        sources: tuple[str, ...],
        target: str,
        *,
        hold: bool = False,
        release: bool = False,
        cancel: bool = False,
        **values: Any,
    ) -> None:
        at = datetime.now(UTC)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.status.in_(sources))
                .values(status=target, updated_at=at, **values)
            )
            if result.rowcount == 0:
                found = (
                    await conn.execute(select(campaigns.c.status).where(campaigns.c.id == campaign_id))
                ).scalar()
                if found is None:
                    raise NotFound(f"no campaign {campaign_id}")
                raise Conflict(f"campaign {campaign_id} is {found}; it cannot become {target}")
            mine = deliveries.c.campaign_id == campaign_id
            if hold:
                await conn.execute(
                    update(deliveries)
                    .where(mine, deliveries.c.status == "pending")
                    .values(status="held", updated_at=at)
                )
            if release:
                await conn.execute(
                    update(deliveries)
                    .where(mine, deliveries.c.status == "held")
                    .values(status="pending", updated_at=at)
                )
            if cancel:
                await conn.execute(
                    update(deliveries)
                    .where(mine, deliveries.c.status.in_(("pending", "held")))
                    .values(status="cancelled", updated_at=at)
                )
