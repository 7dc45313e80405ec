"""The named write queries of ingestion: batch inserts and upserts for SQLite and PostgreSQL.

Every function takes an open connection, so the caller decides the transaction: one batch,
or a whole atomic import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from service.storage import rollups
from service.storage.tables import items, user_consents, users


def _insert(conn: AsyncConnection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


_EVENT_COLUMNS = (
    "event_id", "user_id", "item_id", "event", "occurred_at", "channel", "quantity", "price", "session_id",
    "recommendation_id",
)  # fmt: skip
_COLUMN_LIST = ", ".join(_EVENT_COLUMNS)

# PostgreSQL: the whole batch travels as one array per column, in one statement and one round
# trip, which also adds the inserted rows (not the duplicates) to the daily roll-ups.
_PG_INSERT_EVENTS = f"""
WITH batch AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
        $6::text[], $7::float8[], $8::float8[], $9::text[], $10::text[]
    ) AS t({_COLUMN_LIST})
),
inserted AS (
    INSERT INTO events ({_COLUMN_LIST})
    SELECT * FROM batch
    ON CONFLICT (event_id) DO NOTHING
    RETURNING {_COLUMN_LIST}
),
{", ".join(f"rollup_{n} AS ({sql})" for n, sql in enumerate(rollups.statements("postgresql", "inserted")))}
SELECT
    (SELECT count(*) FROM inserted),
    (SELECT count(*) FROM batch WHERE NOT EXISTS (SELECT 1 FROM items WHERE items.item_id = batch.item_id))
"""

_SQLITE_INSERT_EVENT = (
    f"INSERT INTO events ({_COLUMN_LIST}, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO NOTHING"
)


_SQLITE_COUNT_UNKNOWN_ITEMS = (
    "SELECT count(*) FROM json_each(?) AS batch"
    " WHERE NOT EXISTS (SELECT 1 FROM items WHERE items.item_id = batch.value)"
)


def _sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores: naive UTC with microseconds."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


async def insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """Insert event rows, skipping stored `event_id`s; returns (inserted, rows for unknown items).

    The hot path of ingestion: it goes to the driver directly, inside the caller's transaction.
    """
    if not rows:
        return 0, 0
    if conn.dialect.name == "postgresql":
        arrays = tuple([row.get(column) for row in rows] for column in _EVENT_COLUMNS)
        result = await conn.exec_driver_sql(_PG_INSERT_EVENTS, arrays)
        inserted, unknown = tuple(result.one())
        return int(inserted), int(unknown)
    before = (await conn.exec_driver_sql("SELECT total_changes()")).scalar_one()
    last_id = (await conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM events")).scalar_one()
    received = _sqlite_time(datetime.now(UTC))
    await conn.exec_driver_sql(
        _SQLITE_INSERT_EVENT,
        [
            (
                r.get("event_id"),
                r["user_id"],
                r["item_id"],
                r["event"],
                _sqlite_time(r["occurred_at"]),
                r.get("channel"),
                r.get("quantity"),
                r.get("price"),
                r.get("session_id"),
                r.get("recommendation_id"),
                received,
            )
            for r in rows
        ],
    )
    inserted = (await conn.exec_driver_sql("SELECT total_changes()")).scalar_one() - before
    if inserted:
        await rollups.add_sqlite_events_above(conn, last_id)
    item_ids = msgspec.json.encode([r["item_id"] for r in rows]).decode()
    unknown = (await conn.exec_driver_sql(_SQLITE_COUNT_UNKNOWN_ITEMS, (item_ids,))).scalar_one()
    return int(inserted), int(unknown)


async def _upsert(
    conn: AsyncConnection, table: Table, key: list[str], rows: Iterable[Mapping[str, Any]]
) -> int:
    """Insert or update rows; rows setting different columns go in separate statements."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    count = 0
    for columns, group in groups.items():
        statement = _insert(conn, table)
        updates = {c: statement.excluded[c] for c in columns if c not in key}
        statement = (
            statement.on_conflict_do_update(index_elements=key, set_=updates)
            if updates
            else statement.on_conflict_do_nothing(index_elements=key)
        )
        await conn.execute(statement, list(group))
        count += len(group)
    return count


def _stamped(rows: Mapping[str, Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [{**columns, key: ident, "updated_at": now} for ident, columns in rows.items()]


async def upsert_items(conn: AsyncConnection, by_id: Mapping[str, Mapping[str, Any]]) -> int:
    """Upsert items from `{item_id: columns}`; only the given columns change on existing rows."""
    return await _upsert(conn, items, ["item_id"], _stamped(by_id, "item_id"))


async def upsert_users(conn: AsyncConnection, by_id: Mapping[str, Mapping[str, Any]]) -> int:
    """Upsert users from `{user_id: columns}`; only the given columns change on existing rows."""
    return await _upsert(conn, users, ["user_id"], _stamped(by_id, "user_id"))


async def upsert_consents(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    return await _upsert(conn, user_consents, ["user_id", "channel"], rows)
