"""Analytics from the daily roll-ups, against figures computed by hand on a small shop.

The shop (period: 7 days up to 2026-11-30; the period before: 11-17 to 11-23):
  item A: price 10, stock 30; B: stock 5; C: available, never seen; D: unavailable.
  u1 web:  views A on 11-28 and 11-29, buys 2 A for 10 on 11-29; bought 1 A on 11-20 (before).
  u2 app:  views A, buys 1 A for 10 on 11-30.    u2 web: buys 1 B for 50 on 11-25.
  u3 store: views B on 11-26.                    u1 bought B on 11-10 (outside both periods).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from sqlalchemy import delete, insert, select

from service.context import Context
from service.storage import rollups
from service.storage.tables import item_daily, item_weekly, user_channel_daily

Client = httpx.AsyncClient
UNTIL = "2026-11-30"


def ev(n: int, user: str, item: str, kind: str, day: str, channel: str, **extra: object) -> dict[str, object]:
    return {"event_id": f"e{n}", "user_id": user, "item_id": item, "event": kind,
            "timestamp": f"{day}T12:00:00Z", "channel": channel, **extra}  # fmt: skip


EVENTS = [
    ev(1, "u1", "A", "view", "2026-11-28", "web"),
    ev(2, "u1", "A", "view", "2026-11-29", "web"),
    ev(3, "u1", "A", "purchase", "2026-11-29", "web", quantity=2, price=10),
    ev(4, "u1", "A", "purchase", "2026-11-20", "web", quantity=1, price=10),
    ev(5, "u2", "A", "view", "2026-11-30", "app"),
    ev(6, "u2", "A", "purchase", "2026-11-30", "app", quantity=1, price=10),
    ev(7, "u2", "B", "purchase", "2026-11-25", "web", quantity=1, price=50),
    ev(8, "u3", "B", "view", "2026-11-26", "store"),
    ev(9, "u1", "B", "purchase", "2026-11-10", "web", quantity=1, price=50),
]


@pytest.fixture
async def shop(client: Client, admin: dict[str, str]) -> dict[str, str]:
    catalog = [
        {"item_id": "A", "title": "Alpha", "category": "shoes", "price": 10, "stock": 30},
        {"item_id": "B", "title": "Beta", "category": "shoes", "price": 50, "stock": 5},
        {"item_id": "C", "title": "Gamma", "category": "hats", "stock": 100},
        {"item_id": "D", "title": "Delta", "category": "hats", "available": False},
    ]
    assert (await client.put("/v1/items", json=catalog, headers=admin)).status_code == 200
    sent = await client.post("/v1/events", json=EVENTS[:5], headers=admin)
    assert sent.status_code == 200, sent.text
    again = await client.post("/v1/events", json=EVENTS[3:], headers=admin)  # e4, e5 repeat
    assert again.json()["duplicates"] == 2
    return admin


async def test_hot_items_with_conversion_and_change(client: Client, shop: dict[str, str]) -> None:
    body = (
        await client.get("/v1/analytics/items", params={"period": "7d", "until": UNTIL}, headers=shop)
    ).json()
    assert body["period"] == {"from": "2026-11-24", "to": "2026-11-30", "days": 7}
    hot = {row["item_id"]: row for row in body["hot"]}
    assert [row["item_id"] for row in body["hot"]] == ["B", "A"]  # 50 of revenue before 30
    a = hot["A"]
    assert (a["views"], a["purchases"], a["units"], a["revenue"]) == (3, 2, 3.0, 30.0)
    assert a["conversion"] == pytest.approx(2 / 3, abs=1e-6)
    assert a["units_change"] == pytest.approx(2.0)  # 3 units against 1
    assert a["revenue_change"] == pytest.approx(2.0)
    assert hot["B"]["conversion"] == 1.0  # one view (u3, in a store), one purchase (u2, on the web)
    assert hot["B"]["revenue_change"] is None  # nothing before to compare with


async def test_cold_items_are_the_available_slow_movers_with_stock_cover(
    client: Client, shop: dict[str, str]
) -> None:
    body = (await client.get("/v1/analytics/items", params={"until": UNTIL}, headers=shop)).json()
    cold = body["cold"]
    assert [row["item_id"] for row in cold] == ["C", "B", "A"]  # D is unavailable
    assert cold[0]["stock_cover_days"] is None  # no sales: the stock never runs out at this rate
    assert cold[1]["stock_cover_days"] == pytest.approx(35.0)  # 5 in stock / (1 unit / 7 days)
    assert cold[2]["stock_cover_days"] == pytest.approx(70.0)  # 30 / (3 / 7)


async def test_item_filters_by_channel_and_category(client: Client, shop: dict[str, str]) -> None:
    web = (
        await client.get("/v1/analytics/items", params={"until": UNTIL, "channel": "web"}, headers=shop)
    ).json()
    a = next(row for row in web["hot"] if row["item_id"] == "A")
    assert (a["views"], a["units"], a["revenue"]) == (2, 2.0, 20.0)
    hats = (
        await client.get("/v1/analytics/items", params={"until": UNTIL, "category": "hats"}, headers=shop)
    ).json()
    assert hats["hot"] == []
    assert [row["item_id"] for row in hats["cold"]] == ["C"]


async def test_channels_share_conversion_and_multi_channel_buyers(
    client: Client, shop: dict[str, str]
) -> None:
    body = (
        await client.get("/v1/analytics/channels", params={"period": "7d", "until": UNTIL}, headers=shop)
    ).json()
    by = {row["channel"]: row for row in body["channels"]}
    assert (by["web"]["active_users"], by["web"]["buyers"], by["web"]["revenue"]) == (2, 2, 70.0)
    assert by["web"]["revenue_share"] == pytest.approx(70 / 80)
    assert (by["app"]["active_users"], by["app"]["buyers"], by["app"]["revenue"]) == (1, 1, 10.0)
    assert (by["store"]["active_users"], by["store"]["buyers"], by["store"]["conversion"]) == (1, 0, 0.0)
    assert (body["buyers_with_a_channel"], body["multi_channel_buyers"]) == (2, 1)  # u2: web and app


async def test_rebuilding_the_rollups_gives_the_same_figures(ctx: Context, shop: dict[str, str]) -> None:
    async def snapshot() -> list[object]:
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(select(item_daily).order_by(*item_daily.primary_key))).all()
            users = (
                await conn.execute(select(user_channel_daily).order_by(*user_channel_daily.primary_key))
            ).all()
        return [tuple(r) for r in rows] + [tuple(r) for r in users]

    before = await snapshot()
    async with ctx.engine.begin() as conn:
        await conn.execute(delete(item_daily))
        await conn.execute(delete(item_weekly))
        await rollups.rebuild(conn)
    assert await snapshot() == before
    assert len(before) > 0


async def test_online_click_through_per_model_version(
    client: Client, ctx: Context, shop: dict[str, str]
) -> None:
    for _ in range(4):
        ctx.serving.served.add("v1")
    await ctx.serving.served.flush(ctx.engine)
    now = datetime.now(UTC).isoformat()
    clicks = [
        {"user_id": "u1", "item_id": "A", "event": "click", "timestamp": now, "recommendation_id": "v1.00ab"},
        {"user_id": "u1", "item_id": "A", "event": "click", "timestamp": now, "recommendation_id": "opaque"},
    ]
    sent = await client.post("/v1/events", json=clicks, headers=shop)
    assert sent.status_code == 200, sent.text
    body = (await client.get("/v1/analytics/models", headers=shop)).json()
    today = body["click_through_by_day"][-1]
    assert (today["served"], today["clicked"], today["click_through"]) == (4, 1, 0.25)


async def test_analytics_needs_its_scope_and_checks_parameters(
    client: Client, shop: dict[str, str], auth
) -> None:
    events_only = await auth("events:write")
    assert (await client.get("/v1/analytics/items", headers=events_only)).status_code == 403
    reader = await auth("analytics:read")
    assert (await client.get("/v1/analytics/items", headers=reader)).status_code == 200
    bad = await client.get("/v1/analytics/items", params={"channel": "moon"}, headers=reader)
    assert bad.status_code == 400
    assert "channel" in bad.text
    bad = await client.get("/v1/analytics/items", params={"period": "2w"}, headers=reader)
    assert bad.status_code == 400
    assert "period" in bad.text
    bad = await client.get("/v1/analytics/items", params={"until": "0001-01-01"}, headers=reader)
    assert bad.status_code == 400
    assert "until" in bad.text
    bad = await client.get(
        "/v1/analytics/items", params={"category": "te\x00a"}, headers=reader
    )  # fuzzer's find
    assert bad.status_code == 400
    assert "category" in bad.text


async def test_a_period_ending_today_counts_people_as_the_daily_rows_do(
    ctx: Context, shop: dict[str, str]
) -> None:
    """Distinct users of a period ending today come from last-seen days: the same figures."""
    from service.analytics.queries import Period, channel_report

    period = Period.ending("7d", date(2026, 11, 30))
    from_latest = await channel_report(ctx.engine, period, today=date(2026, 11, 30))
    from_daily = await channel_report(ctx.engine, period, today=date(2026, 12, 31))
    assert from_latest == from_daily
    assert from_latest["multi_channel_buyers"] == 1


async def test_a_month_adds_whole_weeks_and_the_days_around_them(
    client: Client, shop: dict[str, str]
) -> None:
    """30 days to 2026-11-30: Sunday 11-01 from days, weeks 11-02 to 11-29, Monday 11-30 from days."""
    from service.analytics.queries import Period, whole_weeks

    assert whole_weeks(Period.ending("30d", date(2026, 11, 30))) == (
        (date(2026, 11, 2), date(2026, 11, 23)),
        [(date(2026, 11, 1), date(2026, 11, 1)), (date(2026, 11, 30), date(2026, 11, 30))],
    )
    assert whole_weeks(Period.ending("7d", date(2026, 11, 30)))[0] is None  # Tuesday to Monday
    body = (
        await client.get("/v1/analytics/items", params={"period": "30d", "until": UNTIL}, headers=shop)
    ).json()
    hot = {row["item_id"]: row for row in body["hot"]}
    assert (hot["A"]["views"], hot["A"]["purchases"], hot["A"]["units"], hot["A"]["revenue"]) == (
        3,
        3,
        4.0,
        40.0,
    )
    assert (hot["B"]["views"], hot["B"]["purchases"], hot["B"]["units"], hot["B"]["revenue"]) == (
        1,
        2,
        2.0,
        100.0,
    )


async def test_served_counts_that_cannot_be_written_wait_for_the_next_flush(
    ctx: Context, shop: dict[str, str]
) -> None:
    from sqlalchemy.exc import OperationalError

    from service.serving.served import ServedCounter
    from service.settings import DatabaseSettings
    from service.storage.engine import create_engine
    from service.storage.tables import recommendation_daily

    counter = ServedCounter()
    counter.add("v9")
    counter.add("v9")
    counter.add(None)  # no model: nothing to count
    away = create_engine(DatabaseSettings(url="sqlite+aiosqlite:////nonexistent/dir/shopcast.db"))
    with pytest.raises(OperationalError):
        await counter.flush(away)
    await away.dispose()
    counter.add("v9")
    await counter.flush(ctx.engine)
    async with ctx.engine.connect() as conn:
        served = (await conn.execute(select(recommendation_daily.c.served))).scalars().all()
    assert served == [3]


async def test_a_campaign_past_its_window_is_summed_once_and_kept(
    client: Client, ctx: Context, shop: dict[str, str]
) -> None:
    from sqlalchemy import update

    from service.storage.tables import campaign_recipients, campaigns

    spec = {
        "name": "Old news",
        "channels": ["email"],
        "audience": {"consent": "email"},
        "attribution_days": 1,
    }
    campaign_id = (await client.post("/v1/campaigns", json=spec, headers=shop)).json()["id"]
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    async with ctx.engine.begin() as conn:
        await conn.execute(update(campaigns).values(status="completed", completed_at=long_ago))
        await conn.execute(
            insert(campaign_recipients).values(campaign_id=campaign_id, run=1, user_id="u1", channel="email",
                                               variant="main", outcome="treated", planned_at=long_ago)
        )  # fmt: skip
    first = (await client.get("/v1/analytics/campaigns", headers=shop)).json()["campaigns"]
    assert [(row["name"], row["audience"]) for row in first] == [("Old news", 1)]
    async with ctx.engine.begin() as conn:  # the kept row is what answers from now on
        await conn.execute(update(campaigns).values(final_results={**first[0], "audience": 999}))
    again = (await client.get("/v1/analytics/campaigns", headers=shop)).json()["campaigns"]
    assert again[0]["audience"] == 999
    async with ctx.engine.begin() as conn:  # a running campaign is always summed afresh
        await conn.execute(update(campaigns).values(status="running", final_results=None))
    live = (await client.get("/v1/analytics/campaigns", headers=shop)).json()["campaigns"]
    assert live[0]["audience"] == 1
    async with ctx.engine.connect() as conn:
        assert (await conn.execute(select(campaigns.c.final_results))).scalar() is None
