"""Daily roll-ups of events, written with the events themselves, so analytics never scan events.

Each statement adds a set of new events to `item_daily`, `item_weekly`, `channel_daily`,
`user_channel_daily`, `user_channel_latest` and `recommendation_daily` (clicks reported with a
recommendation id `VERSION.…`). On PostgreSQL they run inside the insert's own statement, fed by its
`RETURNING`, so a duplicate event (skipped by `ON CONFLICT`) is never counted; on SQLite (one
writer) they read the rows inserted above the id the transaction saw before its insert.
`rebuild` computes them all again from the events table (after a bulk load outside shopcast).

Rows are grouped and ordered by their key, so concurrent batches lock rows in the same order.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from service.storage.tables import recommendation_daily

_PURCHASE = "event = 'purchase'"

_ITEM = f"""
INSERT INTO {{table}} AS d ({{unit}}, item_id, channel, views, clicks, carts, purchases, units, revenue)
SELECT {{unit_value}}, item_id, coalesce(channel, ''),
    sum(CASE WHEN event = 'view' THEN 1 ELSE 0 END),
    sum(CASE WHEN event = 'click' THEN 1 ELSE 0 END),
    sum(CASE WHEN event = 'add_to_cart' THEN 1 ELSE 0 END),
    sum(CASE WHEN {_PURCHASE} THEN 1 ELSE 0 END),
    sum(CASE WHEN {_PURCHASE} THEN coalesce(quantity, 1) ELSE 0 END),
    sum(CASE WHEN {_PURCHASE} THEN coalesce(price, 0) * coalesce(quantity, 1) ELSE 0 END)
FROM {{source}} WHERE {{where}}
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT ({{unit}}, item_id, channel) DO UPDATE SET
    views = d.views + excluded.views, clicks = d.clicks + excluded.clicks,
    carts = d.carts + excluded.carts, purchases = d.purchases + excluded.purchases,
    units = d.units + excluded.units, revenue = d.revenue + excluded.revenue
"""

_USER = f"""
INSERT INTO user_channel_daily AS d (day, channel, user_id, events, purchases, revenue)
SELECT {{day}}, coalesce(channel, ''), user_id, count(*),
    sum(CASE WHEN {_PURCHASE} THEN 1 ELSE 0 END),
    sum(CASE WHEN {_PURCHASE} THEN coalesce(price, 0) * coalesce(quantity, 1) ELSE 0 END)
FROM {{source}} WHERE {{where}}
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (day, channel, user_id) DO UPDATE SET
    events = d.events + excluded.events, purchases = d.purchases + excluded.purchases,
    revenue = d.revenue + excluded.revenue
"""

_CHANNEL = f"""
INSERT INTO channel_daily AS d (day, channel, events, purchases, revenue)
SELECT {{day}}, coalesce(channel, ''), count(*),
    sum(CASE WHEN {_PURCHASE} THEN 1 ELSE 0 END),
    sum(CASE WHEN {_PURCHASE} THEN coalesce(price, 0) * coalesce(quantity, 1) ELSE 0 END)
FROM {{source}} WHERE {{where}}
GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (day, channel) DO UPDATE SET
    events = d.events + excluded.events, purchases = d.purchases + excluded.purchases,
    revenue = d.revenue + excluded.revenue
"""

# The later of two days, either of which may be null (SQLite's max() of a null is null).
_LATER = "{greatest}(coalesce(d.{c}, excluded.{c}), coalesce(excluded.{c}, d.{c}))"
_LATEST = f"""
INSERT INTO user_channel_latest AS d (user_id, channel, last_seen_day, last_purchase_day)
SELECT user_id, coalesce(channel, ''), max({{day}}), max(CASE WHEN {_PURCHASE} THEN {{day}} END)
FROM {{source}} WHERE {{where}}
GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (user_id, channel) DO UPDATE SET
    last_seen_day = {_LATER.format(greatest="{greatest}", c="last_seen_day")},
    last_purchase_day = {_LATER.format(greatest="{greatest}", c="last_purchase_day")}
"""

_CLICKS = """
INSERT INTO recommendation_daily AS d (day, model_version, served, clicked)
SELECT {day}, {version}, 0, count(*)
FROM {source} WHERE ({where}) AND event = 'click' AND recommendation_id LIKE '%_._%'
GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (day, model_version) DO UPDATE SET clicked = d.clicked + excluded.clicked
"""

_DAY = {"postgresql": "(occurred_at AT TIME ZONE 'UTC')::date", "sqlite": "date(occurred_at)"}
_GREATEST = {"postgresql": "greatest", "sqlite": "max"}
_WEEK = {  # the Monday of the event's ISO week
    "postgresql": "date_trunc('week', occurred_at AT TIME ZONE 'UTC')::date",
    "sqlite": "date(occurred_at, '-6 days', 'weekday 1')",
}
_VERSION = {
    "postgresql": "left(split_part(recommendation_id, '.', 1), 64)",
    "sqlite": "substr(recommendation_id, 1, min(64, instr(recommendation_id, '.') - 1))",
}


def statements(dialect: str, source: str, where: str = "true") -> list[str]:
    """The roll-up inserts over `source` (a table or CTE with the events' columns)."""
    day, version, greatest = _DAY[dialect], _VERSION[dialect], _GREATEST[dialect]
    return [
        _ITEM.format(table="item_daily", unit="day", unit_value=day, source=source, where=where),
        _ITEM.format(table="item_weekly", unit="week", unit_value=_WEEK[dialect], source=source, where=where),
        _CHANNEL.format(day=day, source=source, where=where),
        _USER.format(day=day, source=source, where=where),
        _LATEST.format(day=day, source=source, where=where, greatest=greatest),
        _CLICKS.format(day=day, version=version, source=source, where=where),
    ]


async def add_sqlite_events_above(conn: AsyncConnection, last_id: int) -> None:
    """SQLite: add the events with `id > last_id` (this transaction's inserts) to the roll-ups."""
    for sql in statements("sqlite", "events", f"id > {int(last_id)}"):
        await conn.exec_driver_sql(sql)


async def add_served(conn: AsyncConnection, counts: dict[tuple[date, str], int]) -> None:
    """Add recommendations served, `{(day, model version): count}`."""
    if not counts:
        return
    table = recommendation_daily
    statement = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
    statement = statement.on_conflict_do_update(
        index_elements=["day", "model_version"], set_={"served": table.c.served + statement.excluded.served}
    )
    rows = [
        {"day": day, "model_version": version[:64], "served": n, "clicked": 0}
        for (day, version), n in sorted(counts.items())
    ]
    await conn.execute(statement, rows)


async def rebuild(conn: AsyncConnection) -> None:
    """Compute every roll-up again from the events table (served counts are kept)."""
    for table in ("item_daily", "item_weekly", "channel_daily", "user_channel_daily", "user_channel_latest"):
        await conn.exec_driver_sql(f"DELETE FROM {table}")
    await conn.exec_driver_sql("UPDATE recommendation_daily SET clicked = 0")
    for sql in statements(conn.dialect.name, "events"):
        await conn.exec_driver_sql(sql)
