"""Analytics read from the daily roll-ups: hot and cold items, channels, campaigns and models.

A period is the last N whole UTC days up to and including `until` (default today); "change"
compares it with the N days before. Revenue and units count purchases (refunds are not
subtracted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, distinct, func, literal, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns import report as campaign_report
from service.campaigns.store import CampaignStore
from service.storage.tables import (
    campaigns,
    channel_daily,
    item_daily,
    item_weekly,
    items,
    recommendation_daily,
    user_channel_daily,
    user_channel_latest,
)
from training.registry import ModelRegistry

PERIODS = {"1d": 1, "7d": 7, "30d": 30, "90d": 90}


@dataclass(frozen=True)
class Period:
    first: date
    last: date

    @classmethod
    def ending(cls, name: str, until: date | None = None) -> Period:
        last = until or datetime.now(UTC).date()
        return cls(last - timedelta(days=PERIODS[name] - 1), last)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def before(self) -> Period:
        return Period(self.first - timedelta(days=self.days), self.first - timedelta(days=1))

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "days": self.days}


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def _change(now: float, before: float) -> float | None:
    return round((now - before) / before, 6) if before else None


def whole_weeks(period: Period) -> tuple[tuple[date, date] | None, list[tuple[date, date]]]:
    """The period as (first and last Monday of its whole ISO weeks, or None) and the days around them."""
    first_monday = period.first + timedelta(days=(7 - period.first.weekday()) % 7)
    last_sunday = period.last - timedelta(days=(period.last.weekday() + 1) % 7)
    if last_sunday - first_monday < timedelta(days=6):
        return None, [(period.first, period.last)]
    edges = [(period.first, first_monday - timedelta(days=1)), (last_sunday + timedelta(days=1), period.last)]
    return (first_monday, last_sunday - timedelta(days=6)), [(a, b) for a, b in edges if a <= b]


def _item_totals(period: Period, channel: str | None, item_ids: list[str] | None = None) -> Select[Any]:
    """Per-item sums over the period: whole weeks from `item_weekly`, the other days from `item_daily`.

    For a few given items, every day from `item_daily` (its index on item and day finds them).
    """
    weeks, day_ranges = whole_weeks(period) if item_ids is None else (None, [(period.first, period.last)])
    parts = []
    for table, unit, ranges in (
        (item_weekly, "week", [weeks] if weeks else []),
        (item_daily, "day", day_ranges),
    ):
        for first, last in ranges:
            part = select(table.c.item_id, *(table.c[m] for m in _MEASURES)).where(
                table.c[unit].between(first, last)
            )
            if channel is not None:
                part = part.where(table.c.channel == channel)
            if item_ids is not None:
                part = part.where(table.c.item_id.in_(item_ids))
            parts.append(part)
    rows = union_all(*parts).subquery("rows") if len(parts) > 1 else parts[0].subquery("rows")
    return select(rows.c.item_id, *(func.sum(rows.c[m]).label(m) for m in _MEASURES)).group_by(rows.c.item_id)


async def item_report(
    engine: AsyncEngine,
    period: Period,
    *,
    channel: str | None = None,
    category: str | None = None,
    limit: int = 20,
) -> dict[str, Any]:
    """Hot items (most revenue, then units and views) and cold ones (available, least seen and sold).

    One statement aggregates the period once and draws both lists from it; the period before
    is then summed for the hot items only.
    """
    now = _item_totals(period, channel).cte("now")
    in_category = [items.c.category == category] if category is not None else []
    hot = (
        select(
            literal("hot").label("list"),
            now.c.item_id,
            items.c.title,
            items.c.category,
            items.c.stock,
            *(now.c[m] for m in _MEASURES),
        )
        .select_from(now.outerjoin(items, items.c.item_id == now.c.item_id))
        .where(now.c.purchases + now.c.views > 0, *in_category)
        .order_by(now.c.revenue.desc(), now.c.units.desc(), now.c.views.desc(), now.c.item_id)
        .limit(limit)
        .subquery()
    )
    activity = func.coalesce(now.c.views, 0) + func.coalesce(now.c.units, 0)
    on_channel = (
        [func.coalesce(items.c.channel_availability[channel].as_boolean(), True).is_(True)] if channel else []
    )
    cold = (
        select(
            literal("cold").label("list"),
            items.c.item_id,
            items.c.title,
            items.c.category,
            items.c.stock,
            *(func.coalesce(now.c[m], 0).label(m) for m in _MEASURES),
        )
        .select_from(items.outerjoin(now, now.c.item_id == items.c.item_id))
        .where(items.c.available.is_(True), *in_category, *on_channel)
        .order_by(activity.asc(), func.coalesce(items.c.stock, 0).desc(), items.c.item_id)
        .limit(limit)
        .subquery()
    )
    both = union_all(select(hot), select(cold))
    async with engine.connect() as conn:
        rows = (await conn.execute(both)).all()
        hot_rows = [r for r in rows if r.list == "hot"]
        before: dict[str, Any] = {}
        if hot_rows:
            earlier = _item_totals(period.before(), channel, [r.item_id for r in hot_rows])
            before = {r.item_id: r for r in (await conn.execute(earlier)).all()}
    # UNION ALL keeps neither list's order: each is sorted again, by the keys its LIMIT chose by
    hot_sorted = sorted(hot_rows, key=lambda r: (-r.revenue, -r.units, -r.views, r.item_id))
    cold_sorted = sorted((r for r in rows if r.list == "cold"),
                         key=lambda r: (r.views + r.units, -(r.stock or 0), r.item_id))  # fmt: skip
    return {
        "period": period.as_dict(),
        "channel": channel,
        "category": category,
        "hot": [_hot(row, before.get(row.item_id)) for row in hot_sorted],
        "cold": [_cold(row, period) for row in cold_sorted],
    }


_MEASURES = ("views", "clicks", "carts", "purchases", "units", "revenue")


def _hot(row: Any, before: Any) -> dict[str, Any]:
    return {
        "item_id": row.item_id,
        "title": row.title,
        "category": row.category,
        "views": int(row.views),
        "clicks": int(row.clicks),
        "carts": int(row.carts),
        "purchases": int(row.purchases),
        "units": float(row.units),
        "revenue": round(float(row.revenue), 2),
        "conversion": _ratio(row.purchases, row.views),
        "units_change": _change(float(row.units), float(before.units) if before else 0.0),
        "revenue_change": _change(float(row.revenue), float(before.revenue) if before else 0.0),
    }


def _cold(row: Any, period: Period) -> dict[str, Any]:
    per_day = float(row.units) / period.days
    return {
        "item_id": row.item_id,
        "title": row.title,
        "category": row.category,
        "views": int(row.views),
        "units": float(row.units),
        "stock": row.stock,
        # days the stock lasts at this period's rate; null: no sales, or stock not tracked
        "stock_cover_days": round(row.stock / per_day, 1) if row.stock is not None and per_day else None,
    }


async def channel_report(engine: AsyncEngine, period: Period, today: date | None = None) -> dict[str, Any]:
    """Revenue share, active users, buyers and conversion per channel; buyers on several channels.

    Sums come from `channel_daily`. Distinct users of a period that ends today come from each
    user's last active and purchase day per channel; of an earlier period, from the daily rows.
    """
    today = today or datetime.now(UTC).date()
    c = channel_daily.c
    sums = (
        select(c.channel, func.sum(c.purchases).label("orders"), func.sum(c.revenue).label("revenue"))
        .where(c.day.between(period.first, period.last))
        .group_by(c.channel)
    )
    people, buyer_channels = _people_latest(period) if period.last >= today else _people_daily(period)
    spread = select(
        func.count().label("buyers"),
        func.count().filter(buyer_channels.c.channels > 1).label("multi"),
    ).select_from(buyer_channels)
    async with engine.connect() as conn:
        totals = {r.channel: r for r in (await conn.execute(sums)).all()}
        counts = {r.channel: r for r in (await conn.execute(people)).all()}
        buyers, multi = (await conn.execute(spread)).one()
    revenue = {ch: float(totals[ch].revenue or 0) if ch in totals else 0.0 for ch in {*totals, *counts}}
    total = sum(revenue.values())
    rows = []
    for channel in sorted(revenue, key=lambda ch: (-revenue[ch], ch)):
        active = int(counts[channel].active_users) if channel in counts else 0
        buying = int(counts[channel].buyers) if channel in counts else 0
        rows.append(
            {
                "channel": channel or None,
                "active_users": active,
                "buyers": buying,
                "orders": int(totals[channel].orders or 0) if channel in totals else 0,
                "revenue": round(revenue[channel], 2),
                "revenue_share": _ratio(revenue[channel], total),
                "conversion": _ratio(buying, active),
            }
        )
    return {
        "period": period.as_dict(),
        "channels": rows,
        "buyers_with_a_channel": int(buyers),
        "multi_channel_buyers": int(multi),
        "multi_channel_share": _ratio(multi, buyers),
    }


def _people_latest(period: Period) -> tuple[Select[Any], Any]:
    latest = user_channel_latest.c
    people = (
        select(
            latest.channel,
            func.count().label("active_users"),
            func.count().filter(latest.last_purchase_day >= period.first).label("buyers"),
        )
        .where(latest.last_seen_day >= period.first)
        .group_by(latest.channel)
    )
    buyer_channels = (
        select(latest.user_id, func.count().label("channels"))
        .where(latest.last_purchase_day >= period.first, latest.channel != "")
        .group_by(latest.user_id)
        .subquery()
    )
    return people, buyer_channels


def _people_daily(period: Period) -> tuple[Select[Any], Any]:
    d = user_channel_daily.c
    in_period = d.day.between(period.first, period.last)
    per_user = (
        select(d.channel, d.user_id, func.max(d.purchases).label("purchases"))
        .where(in_period)
        .group_by(d.channel, d.user_id)
        .subquery()
    )
    people = select(
        per_user.c.channel,
        func.count().label("active_users"),
        func.count().filter(per_user.c.purchases > 0).label("buyers"),
    ).group_by(per_user.c.channel)
    buyer_channels = (
        select(d.user_id, func.count(distinct(d.channel)).label("channels"))
        .where(in_period, d.purchases > 0, d.channel != "")
        .group_by(d.user_id)
        .subquery()
    )
    return people, buyer_channels


async def campaign_table(engine: AsyncEngine, *, limit: int = 50) -> dict[str, Any]:
    """Every campaign's headline results, newest first: one row each.

    A campaign that has ended and whose attribution window has closed cannot change: its row is
    computed once and kept (`campaigns.final_results`); the others are computed now.
    """
    rows = []
    for campaign in (await CampaignStore(engine).all())[:limit]:
        if campaign.final_results is not None:
            rows.append(campaign.final_results)
            continue
        report = campaign_report.as_dict(await campaign_report.build(engine, campaign))
        row = _campaign_row(campaign, report)
        if campaign.status in ("completed", "cancelled") and report["window_complete"]:
            async with engine.begin() as conn:
                await conn.execute(
                    update(campaigns).where(campaigns.c.id == campaign.id).values(final_results=row)
                )
        rows.append(row)
    return {"campaigns": rows}


def _campaign_row(campaign: Any, report: dict[str, Any]) -> dict[str, Any]:
    funnel, lift = report["funnel"], report["lift"]
    return {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "channels": list(campaign.definition.channels),
        "audience": funnel["audience"],
        "sent": funnel["sent"],
        "failed": funnel["failed"],
        "clicked": funnel["clicked"],
        "click_rate": _ratio(funnel["clicked"], funnel["sent"]),
        "unsubscribed": funnel["unsubscribed"],
        "converted": funnel["converted"],
        "revenue": funnel["revenue"],
        "lift": lift["absolute"],
        "lift_p_value": lift["p_value"],
        "significant": lift["significant"],
    }


async def model_report(engine: AsyncEngine, registry: ModelRegistry, period: Period) -> dict[str, Any]:
    """Offline metrics of every model version, oldest first, and online click-through per version."""
    r = recommendation_daily.c
    online_query = (
        select(r.model_version, func.sum(r.served).label("served"), func.sum(r.clicked).label("clicked"))
        .where(r.day.between(period.first, period.last))
        .group_by(r.model_version)
    )
    daily_query = (
        select(r.day, func.sum(r.served).label("served"), func.sum(r.clicked).label("clicked"))
        .where(r.day.between(period.first, period.last))
        .group_by(r.day)
        .order_by(r.day)
    )
    async with engine.connect() as conn:
        online = {row.model_version: row for row in (await conn.execute(online_query)).all()}
        daily = (await conn.execute(daily_query)).all()
    versions = reversed(await registry.versions())  # the registry lists newest first
    return {
        "period": period.as_dict(),
        "versions": [
            {
                "version": v.version,
                "created_at": v.created_at.isoformat(),
                "activated_at": v.activated_at.isoformat() if v.activated_at else None,
                "serving": v.current,
                "forced": bool(v.forced),
                "offline": _headline_metrics(v.metrics or {}),
                "online": _online(online.get(v.version)),
            }
            for v in versions
        ],
        "click_through_by_day": [{"day": row.day.isoformat(), **_online(row)} for row in daily],
    }


def _online(row: Any) -> dict[str, Any]:
    served, clicked = (int(row.served), int(row.clicked)) if row is not None else (0, 0)
    return {"served": served, "clicked": clicked, "click_through": _ratio(clicked, served)}


HEADLINE = ("ndcg@10", "recall@20", "hitrate@10", "coverage")


def _headline_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The figures staff compare across versions, per evaluation variant (novel, all)."""
    return {
        variant: {name: values[name] for name in HEADLINE if name in values}
        for variant, values in metrics.items()
        if isinstance(values, dict)
    }
