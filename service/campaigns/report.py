"""What a campaign did: its funnel, what it earned, and its lift over the holdout.

Funnel    audience (users considered, per run), planned deliveries, sent, failed, unknown,
          skipped by reason (at planning and at sending), opened (unreliable: privacy proxies
          fetch pixels), clicked, unsubscribed, converted and revenue.
Converted a purchase is the campaign's when its last touch, within `attribution_days` before
          the purchase, is this campaign's: the latest message click, or without a click, the
          latest campaign message sent.
Lift      intention to treat: everyone planned to get the message (treated) against the
          holdout, each judged by a purchase within `attribution_days` after their planning,
          so that failed or delayed sends count against the campaign, as they should.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns import stats
from service.campaigns.store import Campaign
from service.storage.tables import campaign_recipients, deliveries, events, message_events

RANK = {"skipped": 0, "holdout": 1, "treated": 2}


@dataclass
class Group:
    users: int = 0
    converted: int = 0
    revenue: float = 0.0

    @property
    def rate(self) -> float:
        return self.converted / self.users if self.users else 0.0


@dataclass
class VariantResult:
    name: str
    recipients: int = 0
    sent: int = 0
    clicked: int = 0
    converted: int = 0
    revenue: float = 0.0


@dataclass
class Report:
    campaign_id: int
    name: str
    status: str
    status_reason: str | None
    runs: int
    attribution_days: int
    window_complete: bool
    audience: int
    planned: int
    holdout: int
    deliveries: dict[str, int]
    skipped: dict[str, int]
    opened: int
    clicked: int
    unsubscribed: int
    converted: int
    revenue: float
    treated_group: Group
    holdout_group: Group
    lift: stats.Lift | None
    variants: list[VariantResult] = field(default_factory=list)
    variant_test: stats.VariantTest | None = None


def _recipients_of(campaign_id: int) -> Any:
    """The campaign's recipients as a subquery: the report's reads join it instead of id lists."""
    r = campaign_recipients.c
    return select(r.user_id).where(r.campaign_id == campaign_id).distinct().subquery("recipients")


async def _purchases(
    engine: AsyncEngine, campaign_id: int, since: datetime, until: datetime
) -> dict[str, list[tuple[datetime, float]]]:
    """Each recipient's purchases from `since` to `until` (not the future), in time order, with revenue."""
    found: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    revenue = func.coalesce(events.c.price, 0) * func.coalesce(events.c.quantity, 1)
    who = _recipients_of(campaign_id)
    query = (
        select(events.c.user_id, events.c.occurred_at, revenue)
        .join(who, who.c.user_id == events.c.user_id)
        .where(events.c.event == "purchase", events.c.occurred_at.between(since, until))
        .order_by(events.c.occurred_at)
    )
    async with engine.connect() as conn:
        for uid, at, amount in await conn.execute(query):
            found[uid].append((at, float(amount or 0)))
    return found


async def _touches(
    engine: AsyncEngine, campaign_id: int, since: datetime
) -> tuple[dict[str, list[tuple[datetime, int]]], dict[str, list[tuple[datetime, int]]]]:
    """Per recipient, every campaign's clicks and every campaign's sent messages since `since`."""
    clicks: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    sends: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    who = _recipients_of(campaign_id)
    m, d = message_events.c, deliveries.c
    click_query = (
        select(m.user_id, m.occurred_at, m.campaign_id)
        .join(who, who.c.user_id == m.user_id)
        .where(m.kind == "click", m.campaign_id.is_not(None), m.occurred_at >= since)
    )
    send_query = (
        select(d.user_id, d.sent_at, d.campaign_id)
        .join(who, who.c.user_id == d.user_id)
        .where(d.campaign_id.is_not(None), d.status == "sent", d.sent_at >= since)
    )
    async with engine.connect() as conn:
        for uid, at, cid in await conn.execute(click_query):
            clicks[uid].append((at, cid))
        for uid, at, cid in await conn.execute(send_query):
            sends[uid].append((at, cid))
    for table in (clicks, sends):
        for touches in table.values():
            touches.sort()
    return clicks, sends


def last_touch(touches: list[tuple[datetime, int]], at: datetime, window: timedelta) -> int | None:
    """The campaign of the latest touch at or before `at` and within `window` of it."""
    index = bisect.bisect_right(touches, (at, 2**63)) - 1
    if index >= 0 and touches[index][0] >= at - window:
        return touches[index][1]
    return None


def attributed(
    campaign_id: int,
    purchases: list[tuple[datetime, float]],
    clicks: list[tuple[datetime, int]],
    sends: list[tuple[datetime, int]],
    window: timedelta,
) -> tuple[bool, float]:
    """(converted, revenue) of one user for `campaign_id`, last touch: a click beats a send."""
    converted, revenue = False, 0.0
    for at, amount in purchases:
        owner = last_touch(clicks, at, window)
        if owner is None:
            owner = last_touch(sends, at, window)
        if owner == campaign_id:
            converted, revenue = True, revenue + amount
    return converted, revenue


async def build(engine: AsyncEngine, campaign: Campaign, now: datetime | None = None) -> Report:
    now = now or datetime.now(UTC)
    definition = campaign.definition
    window = timedelta(days=definition.attribution_days)
    cid = campaign.id
    r = campaign_recipients.c
    async with engine.connect() as conn:
        recipients = (
            await conn.execute(
                select(r.run, r.user_id, r.channel, r.variant, r.outcome, r.reason, r.planned_at).where(
                    r.campaign_id == cid
                )
            )
        ).all()
        statuses: dict[str, int] = dict(
            (
                await conn.execute(
                    select(deliveries.c.status, func.count())
                    .where(deliveries.c.campaign_id == cid)
                    .group_by(deliveries.c.status)
                )
            ).all()
        )
        send_skips = (
            await conn.execute(
                select(deliveries.c.error).where(
                    deliveries.c.campaign_id == cid, deliveries.c.status == "skipped"
                )
            )
        ).scalars()
        skipped: Counter[str] = Counter((e or "unknown").split(":", 1)[0] for e in send_skips)
        sent_rows = (
            await conn.execute(
                select(deliveries.c.user_id).where(
                    deliveries.c.campaign_id == cid,
                    deliveries.c.status == "sent",
                    deliveries.c.user_id.is_not(None),
                )
            )
        ).scalars()
        sent_users = Counter(sent_rows)
        engaged: dict[str, set[str]] = defaultdict(set)
        for kind, uid in await conn.execute(
            select(message_events.c.kind, message_events.c.user_id).where(message_events.c.campaign_id == cid)
        ):
            if uid:
                engaged[kind].add(uid)

    # who was considered, and each unit of the lift: (run, user)
    units: dict[tuple[int, str], tuple[str, str, datetime]] = {}
    for run, uid, _channel, variant, outcome, reason, planned_at in recipients:
        if outcome == "skipped":
            skipped[reason or "unknown"] += 1
        previous = units.get((run, uid))
        if previous is None or RANK[outcome] > RANK[previous[0]]:  # treated on any channel: treated
            units[(run, uid)] = (outcome, variant, planned_at)
    first = min((p for _, _, p in units.values()), default=now)
    purchases = await _purchases(engine, cid, first, now)
    clicks, sends = await _touches(engine, cid, first - window)

    groups = {"treated": Group(), "holdout": Group()}
    variants: dict[str, VariantResult] = {name: VariantResult(name) for name in definition.variant_names()}
    for (_run, uid), (outcome, variant, planned_at) in units.items():
        if outcome not in groups:
            continue
        bought = [
            (at, amount) for at, amount in purchases.get(uid, []) if planned_at <= at <= planned_at + window
        ]
        group = groups[outcome]
        group.users += 1
        if bought:
            group.converted += 1
            group.revenue += sum(amount for _, amount in bought)
        if outcome == "treated":
            v = variants.setdefault(variant, VariantResult(variant))
            v.recipients += 1
            v.sent += int(sent_users[uid] > 0)
            v.clicked += int(uid in engaged["click"])

    converted = 0
    revenue = 0.0
    treated_variant = {uid: v for (_run, uid), (outcome, v, _p) in units.items() if outcome == "treated"}
    for uid, variant in treated_variant.items():
        hit, amount = attributed(cid, purchases.get(uid, []), clicks.get(uid, []), sends.get(uid, []), window)
        if hit:
            converted += 1
            revenue += amount
            variants[variant].converted += 1
            variants[variant].revenue += amount

    treated, holdout = groups["treated"], groups["holdout"]
    ordered = list(variants.values())
    test = None
    if len(ordered) > 1:
        test = stats.compare("conversion", [v.converted for v in ordered], [v.recipients for v in ordered])
    last_planned = max((p for _, _, p in units.values()), default=now)
    return Report(
        campaign_id=cid,
        name=campaign.name,
        status=campaign.status,
        status_reason=campaign.status_reason,
        runs=campaign.run,
        attribution_days=definition.attribution_days,
        window_complete=now >= last_planned + window,
        audience=len(units),
        planned=sum(n for status, n in statuses.items() if status != "cancelled"),
        holdout=holdout.users,
        deliveries={str(k): int(v) for k, v in statuses.items()},
        skipped=dict(skipped),
        opened=len(engaged["open"]),
        clicked=len(engaged["click"]),
        unsubscribed=len(engaged["unsubscribe"]),
        converted=converted,
        revenue=round(revenue, 2),
        treated_group=treated,
        holdout_group=holdout,
        lift=stats.lift(treated.converted, treated.users, holdout.converted, holdout.users),
        variants=ordered,
        variant_test=test,
    )


def as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (the API's and the command line's shape)."""
    lift = report.lift
    return {
        "campaign_id": report.campaign_id,
        "name": report.name,
        "status": report.status,
        "status_reason": report.status_reason,
        "runs": report.runs,
        "attribution_days": report.attribution_days,
        "window_complete": report.window_complete,
        "funnel": {
            "audience": report.audience,
            "planned": report.planned,
            "holdout": report.holdout,
            "sent": report.deliveries.get("sent", 0),
            "delivered": report.deliveries.get("sent", 0),
            "failed": report.deliveries.get("failed", 0),
            "unknown": report.deliveries.get("unknown", 0),
            "waiting": sum(report.deliveries.get(s, 0) for s in ("pending", "sending", "held")),
            "cancelled": report.deliveries.get("cancelled", 0),
            "skipped": report.skipped,
            "opened": report.opened,
            "opened_note": "unreliable: privacy proxies and scanners fetch images without a person",
            "clicked": report.clicked,
            "unsubscribed": report.unsubscribed,
            "converted": report.converted,
            "revenue": report.revenue,
        },
        "lift": {
            "treated": _group(report.treated_group),
            "holdout": _group(report.holdout_group),
            "absolute": lift.absolute if lift else None,
            "absolute_ci95": list(lift.absolute_ci95) if lift else None,
            "relative": lift.relative if lift else None,
            "relative_ci95": list(lift.relative_ci95) if lift and lift.relative_ci95 else None,
            "p_value": lift.p_value if lift else None,
            "significant": bool(lift and lift.p_value < 0.05),
        },
        "variants": [
            {
                "name": v.name,
                "recipients": v.recipients,
                "sent": v.sent,
                "clicked": v.clicked,
                "converted": v.converted,
                "conversion_rate": v.converted / v.recipients if v.recipients else 0.0,
                "revenue": round(v.revenue, 2),
            }
            for v in report.variants
        ],
        "variant_test": (
            {
                "metric": report.variant_test.metric,
                "chi2": report.variant_test.chi2,
                "p_value": report.variant_test.p_value,
                "significant": report.variant_test.significant,
            }
            if report.variant_test
            else None
        ),
    }


def _group(g: Group) -> dict[str, Any]:
    return {
        "users": g.users,
        "converted": g.converted,
        "conversion_rate": g.rate,
        "revenue": round(g.revenue, 2),
        "revenue_per_user": round(g.revenue / g.users, 4) if g.users else 0.0,
    }
