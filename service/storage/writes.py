"""The named write queries of ingestion: batch inserts and upserts for SQLite and PostgreSQL.

Every function takes an open connection, so the caller decides the transaction: one batch,
or a whole atomic import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from service.storage.tables import events, items, user_consents, users

# Stay below SQLite's 32,766 bound parameters and PostgreSQL's 32,767 per statement.
_IN_CHUNK = 5_000


def _insert(conn: AsyncConnection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


async def insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Insert event rows, skipping any whose `event_id` is stored already; returns rows inserted."""
    if not rows:
        return 0
    statement = (
        _insert(conn, events).on_conflict_do_nothing(index_elements=["event_id"]).returning(events.c.id)
    )
    result = await conn.execute(statement, rows)
    return len(result.all())


async def known_item_ids(conn: AsyncConnection, item_ids: Iterable[str]) -> set[str]:
    """Which of `item_ids` are in the catalog."""
    wanted = list(set(item_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        result = await conn.execute(select(items.c.item_id).where(items.c.item_id.in_(chunk)))
        found.update(result.scalars())
    return found


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
