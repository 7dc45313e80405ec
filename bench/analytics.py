"""Analytics on a large shop: the roll-up queries beside the same figures computed from raw events.

    python bench/analytics.py [--events 10000000] [--users 300000] [--items 50000] [--days 90]

Builds a throwaway PostgreSQL database: events generated inside PostgreSQL (skewed users and
items, four channels, views, carts, purchases over `--days`), then the daily roll-ups computed
from them (`rollups.rebuild`, the backfill path). Then it times:

* each analytics query as the API runs it (`service.analytics.queries`), median of 5 runs,
  beside the same aggregate computed from the events table (the baseline);
* ingest through `insert_events` (events and roll-ups in one statement), beside the same
  batches inserted without roll-ups, into the big table.

Prints a table; ratios hold across machines, absolute times do not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.analytics import queries
from service.analytics.queries import Period
from service.campaigns.definition import CampaignIn
from service.campaigns.store import CampaignStore
from service.settings import DatabaseSettings
from service.storage import rollups
from service.storage.engine import create_engine
from service.storage.migrate import upgrade
from service.storage.writes import insert_events
from training.registry import ModelRegistry

PG_ADMIN = os.environ.get("SHOPCAST_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LAST_DAY = date(2026, 11, 30)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def generate_sql(events: int, users: int, items: int, days: int) -> list[str]:
    """Items and events made by PostgreSQL itself: the fastest way to 10 million rows here."""
    start = datetime.combine(LAST_DAY - timedelta(days=days - 1), datetime.min.time(), UTC)
    return [
        "SELECT setseed(0.42)",
        f"""INSERT INTO items (item_id, title, category, price, available, channel_availability, stock, tags)
            SELECT 'i' || n, 'Item ' || n, 'c' || (n % 40), round((1 + random() * 99)::numeric, 2),
                   n % 17 <> 0, '{{}}', (random() * 200)::int, '[]'
            FROM generate_series(1, {items}) AS n""",
        f"""INSERT INTO events (user_id, item_id, event, occurred_at, channel, quantity, price)
            SELECT 'u' || (floor({users} * power(random(), 2))::int),
                   'i' || (1 + floor({items} * power(random(), 3))::int),
                   (ARRAY['view','view','view','view','view','view','view','add_to_cart','click','purchase'])
                       [1 + floor(random() * 10)::int],
                   timestamptz '{start.isoformat()}' + random() * interval '{days} days',
                   (ARRAY['web','web','app','store'])[1 + floor(random() * 4)::int],
                   1 + floor(random() * 2), round((1 + random() * 99)::numeric, 2)
            FROM generate_series(1, {events})""",
        "ANALYZE",
    ]


def raw_items_sql(period: Period, channel: str | None) -> str:
    where = f"occurred_at >= '{period.first}' AND occurred_at < '{period.last + timedelta(days=1)}'"
    if channel:
        where += f" AND channel = '{channel}'"
    return f"""SELECT item_id, count(*) FILTER (WHERE event = 'view') AS views,
                   sum(CASE WHEN event = 'purchase' THEN quantity ELSE 0 END) AS units,
                   sum(CASE WHEN event = 'purchase' THEN price * quantity ELSE 0 END) AS revenue
               FROM events WHERE {where} GROUP BY item_id ORDER BY revenue DESC LIMIT 20"""


def raw_channels_sql(period: Period) -> str:
    where = f"occurred_at >= '{period.first}' AND occurred_at < '{period.last + timedelta(days=1)}'"
    return f"""SELECT channel, count(DISTINCT user_id),
                   count(DISTINCT user_id) FILTER (WHERE event = 'purchase'),
                   sum(CASE WHEN event = 'purchase' THEN price * quantity ELSE 0 END)
               FROM events WHERE {where} GROUP BY channel"""


async def median_ms(run: Callable[[], Awaitable[Any]], repeat: int = 5) -> float:
    await run()  # warm the cache: both sides are timed warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def bench(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    name = f"shopcast_bench_analytics_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://")
    try:
        await asyncio.to_thread(upgrade, url)
        say(f"generating {args.events:,} events in {name} …")
        started = time.perf_counter()
        conn = await asyncpg.connect(dsn)
        try:
            for sql in generate_sql(args.events, args.users, args.items, args.days):
                await conn.execute(sql)
        finally:
            await conn.close()
        say(f"  {time.perf_counter() - started:.0f} s; computing the roll-ups …")
        engine = create_engine(DatabaseSettings(url=url))
        started = time.perf_counter()
        async with engine.begin() as c:
            await rollups.rebuild(c)
        rebuild_s = time.perf_counter() - started
        async with engine.connect() as c:
            await c.exec_driver_sql("ANALYZE")
        say(f"  roll-ups built in {rebuild_s:.0f} s; timing queries …")
        rows = await time_queries(engine, dsn)
        rows += await time_campaigns(engine, dsn, args.campaigns, args.recipients)
        rows += await time_ingest(engine, dsn)
        rows.append(("roll-up rebuild from all events (s)", rebuild_s, float("nan")))
        await engine.dispose()
        return rows
    finally:
        if args.keep:
            say(f"kept the database: {dsn}")
        else:
            await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def time_queries(engine: Any, dsn: str) -> list[tuple[str, float, float]]:
    raw = await asyncpg.connect(dsn)
    rows = []
    try:
        cases = (("7d", "7d", None), ("30d", "30d", None), ("30d web", "30d", "web"), ("90d", "90d", None))
        for label, period_name, channel in cases:
            period = Period.ending(period_name, LAST_DAY)
            ours = await median_ms(partial(queries.item_report, engine, period, channel=channel))
            base = await median_ms(partial(raw.fetch, raw_items_sql(period, channel)))
            rows.append((f"GET /v1/analytics/items {label} (ms)", ours, base))
        for period_name in ("7d", "30d", "90d"):
            period = Period.ending(period_name, LAST_DAY)
            ours = await median_ms(partial(queries.channel_report, engine, period, LAST_DAY))
            base = await median_ms(partial(raw.fetch, raw_channels_sql(period)))
            rows.append((f"GET /v1/analytics/channels {period_name} (ms)", ours, base))
            earlier = Period.ending(period_name, LAST_DAY - timedelta(days=1))
            ours = await median_ms(partial(queries.channel_report, engine, earlier, LAST_DAY))
            base = await median_ms(partial(raw.fetch, raw_channels_sql(earlier)))
            rows.append(("  the same, ending yesterday (daily rows) (ms)", ours, base))
        period = Period.ending("30d", LAST_DAY)
        ours = await median_ms(lambda: queries.model_report(engine, ModelRegistry(engine, Path()), period))
        rows.append(("GET /v1/analytics/models 30d (ms)", ours, float("nan")))
    finally:
        await raw.close()
    return rows


async def time_campaigns(
    engine: Any, dsn: str, count: int, recipients: int
) -> list[tuple[str, float, float]]:
    """The campaigns table: every campaign's report computed now, beside rows kept once final."""
    store = CampaignStore(engine)
    planned = datetime.now(UTC) - timedelta(days=1)  # attribution windows still open: reports are live
    for n in range(count):
        definition = CampaignIn(name=f"campaign {n}", channels=["email"], audience={"consent": "email"})
        campaign = await store.create(definition)
        raw = await asyncpg.connect(dsn)
        try:
            await raw.execute(
                "UPDATE campaigns SET status = 'completed', run = 1, completed_at = $2 WHERE id = $1",
                campaign.id, planned,
            )  # fmt: skip
            await raw.execute(
                """INSERT INTO campaign_recipients
                       (campaign_id, run, user_id, channel, variant, outcome, planned_at)
                   SELECT $1, 1, 'u' || (($2::int * 7919 + u) % 300000), 'email', 'main',
                          CASE WHEN u % 10 = 0 THEN 'holdout' ELSE 'treated' END, $3
                   FROM generate_series(1, $4::int) AS u ON CONFLICT DO NOTHING""",
                campaign.id, n, planned, recipients,
            )  # fmt: skip
        finally:
            await raw.close()
    live = await median_ms(partial(queries.campaign_table, engine), repeat=3)
    async with engine.begin() as conn:  # as if every attribution window had closed
        await conn.exec_driver_sql(
            "UPDATE campaign_recipients SET planned_at = planned_at - interval '60 days'"
        )
    await queries.campaign_table(engine)  # computes and keeps each final row
    kept = await median_ms(partial(queries.campaign_table, engine))
    return [(f"GET /v1/analytics/campaigns {count}x{recipients:,} (ms, kept | live)", kept, live)]


async def time_ingest(
    engine: Any, dsn: str, batches: int = 20, size: int = 5_000
) -> list[tuple[str, float, float]]:
    """Events per second through insert_events (with roll-ups) and through a plain insert."""
    moment = datetime.combine(LAST_DAY, datetime.min.time(), UTC)

    def batch(tag: str, b: int) -> list[dict[str, Any]]:
        return [
            {"event_id": f"{tag}{b}-{n}", "user_id": f"u{n * 7 % 300_000}", "item_id": f"i{n % 50_000}",
             "event": "purchase" if n % 10 == 0 else "view", "occurred_at": moment, "channel": "web",
             "quantity": 1.0, "price": 9.5, "session_id": None, "recommendation_id": None}
            for n in range(size)
        ]  # fmt: skip

    started = time.perf_counter()
    for b in range(batches):
        async with engine.begin() as conn:
            await insert_events(conn, batch("r", b))
    with_rollups = batches * size / (time.perf_counter() - started)
    raw = await asyncpg.connect(dsn)
    try:
        columns = ("event_id", "user_id", "item_id", "event", "occurred_at", "channel", "quantity", "price")
        sql = (
            f"INSERT INTO events ({', '.join(columns)}) SELECT * FROM unnest($1::text[], $2::text[],"
            " $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::float8[], $8::float8[])"
            " ON CONFLICT (event_id) DO NOTHING"
        )
        started = time.perf_counter()
        for b in range(batches):
            rows = batch("p", b)
            await raw.execute(sql, *([r[c] for r in rows] for c in columns))
        plain = batches * size / (time.perf_counter() - started)
    finally:
        await raw.close()
    return [("ingest, events/s (ours with roll-ups | plain insert)", with_rollups, plain)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=5_000, help="per campaign")
    parser.add_argument("--keep", action="store_true", help="keep the database (its address is printed)")
    args = parser.parse_args()
    rows = asyncio.run(bench(args))
    print(f"\nanalytics on {args.events:,} events, {args.users:,} users, {args.items:,} items, PostgreSQL")
    print(f"{'measure':<58} {'shopcast':>12} {'baseline':>12} {'ratio':>8}")
    for label, ours, base in rows:
        if base != base or not ours:
            ratio = ""
        elif "/s" in label:  # a rate: our share of the baseline's
            ratio = f"{ours / base:.0%}"
        else:  # a time: how many times faster than the baseline
            ratio = f"{base / ours:.1f}x"
        base_text = f"{base:,.1f}" if base == base else "-"
        print(f"{label:<58} {ours:>12,.1f} {base_text:>12} {ratio:>8}")
    print("ratio: times faster than the baseline for times, share of the baseline for rates")
    print("baseline: the same aggregate from the events table (queries), an insert without roll-ups (ingest)")


if __name__ == "__main__":
    main()
