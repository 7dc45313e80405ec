"""Reading the training data from the store: events in chunks, and the catalog's item text."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
from sqlalchemy import Float, cast, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from service.storage.tables import events, items
from training.events import EventLog, LogBuilder, Row

CHUNK_ROWS = 100_000


def _epoch(dialect: str) -> ColumnElement[float]:
    if dialect == "postgresql":
        return cast(func.extract("epoch", events.c.occurred_at), Float)
    return cast((func.julianday(events.c.occurred_at) - 2440587.5) * 86400.0, Float)


async def _chunks(engine: AsyncEngine) -> AsyncIterator[list[Row]]:
    query = select(
        events.c.user_id, events.c.item_id, events.c.event, _epoch(engine.dialect.name), events.c.session_id
    ).order_by(events.c.id)
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=CHUNK_ROWS))
        async for partition in result.partitions(CHUNK_ROWS):
            yield [tuple(row) for row in partition]


async def load_events(engine: AsyncEngine) -> EventLog:
    """Every stored event, coded chunk by chunk as they stream in."""
    builder = LogBuilder()
    async for chunk in _chunks(engine):
        builder.add(chunk)
    return builder.build()


def _text(row: object) -> str:
    m = row._mapping  # type: ignore[attr-defined]
    parts = [m["title"], m["category"] or "", " ".join(m["tags"] or []), m["description"] or ""]
    return " ".join(p for p in parts if p)


async def with_catalog(engine: AsyncEngine, log: EventLog) -> tuple[EventLog, tuple[str, ...]]:
    """The log with catalog items that have no events appended to its item space, and each item's text.

    Items without events still get a column, so content similarity can recommend them.
    """
    texts: dict[str, str] = {}
    async with engine.connect() as conn:
        result = await conn.stream(
            select(items.c.item_id, items.c.title, items.c.category, items.c.tags, items.c.description)
        )
        async for row in result:
            texts[row.item_id] = _text(row)
    known = set(log.item_ids.tolist())
    extra = [item_id for item_id in texts if item_id not in known]
    item_ids = np.concatenate([log.item_ids, np.asarray(extra, dtype=str)]) if extra else log.item_ids
    extended = EventLog(log.users, log.items, log.types, log.timestamps, log.sessions, log.user_ids, item_ids)
    return extended, tuple(texts.get(item_id, "") for item_id in item_ids.tolist())
