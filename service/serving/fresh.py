"""Events newer than the served model, per user, in process memory.

A user's answer must move within seconds of their events (and never offer what they just
bought), but the model only knows what it was trained on. Each serving process reads the
events stored after the model's data window once, then polls for new rows by id (every second
by default; the process that ingested them polls at once). Ids are re-read a little behind the
cursor and deduplicated, as concurrent transactions on PostgreSQL can commit ids out of order.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ColumnElement

from service.storage.tables import events

log = logging.getLogger(__name__)
MAX_EVENTS = 1_000_000
PAGE = 20_000
REREAD_IDS = 1_000


@dataclass(frozen=True)
class FreshEvent:
    id: int
    item_id: str
    event: str
    at: float


class FreshEvents:
    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self.by_user: dict[str, list[FreshEvent]] = {}
        self._seen: set[int] = set()
        self._cursor: int | None = None
        self._floor = 0  # ids up to here were judged by the first read (by time)
        self._after = 0.0
        self.pending: dict[str, None] = {}  # users with events not ranked yet, oldest first

    def for_user(self, user_id: str) -> list[FreshEvent]:
        return self.by_user.get(user_id, [])

    def reset(self, after: float) -> None:
        """Forget everything: the next refresh reads events after `after` (a new model's window end)."""
        self.by_user, self._seen, self._cursor, self._floor, self._after = {}, set(), None, 0, after
        self.pending = {}

    async def refresh(self, engine: AsyncEngine) -> int:
        """Read events stored since the last refresh; returns how many were new."""
        added = 0
        async with engine.connect() as conn:
            if self._cursor is None:
                # a millisecond's margin: the window end went through float seconds
                start = datetime.fromtimestamp(self._after + 0.001, UTC)
                query = select(func.max(events.c.id))
                self._cursor = self._floor = int((await conn.execute(query)).scalar() or 0)
                condition = events.c.occurred_at > start
                added += await self._read(conn, condition, upper=self._cursor)
            while True:
                before = self._cursor
                lowest = max(self._cursor - REREAD_IDS, self._floor)
                page = await self._read(conn, events.c.id > lowest, upper=None)
                added += page
                if self._cursor == before or page == 0:
                    break
        self._trim()
        return added

    async def _read(self, conn: AsyncConnection, condition: ColumnElement[bool], *, upper: int | None) -> int:
        query = (
            select(events.c.id, events.c.user_id, events.c.item_id, events.c.event, events.c.occurred_at)
            .where(condition)
            .order_by(events.c.id)
            .limit(PAGE if upper is None else self.max_events)
        )
        if upper is not None:
            query = query.where(events.c.id <= upper)
        added = 0
        result = await conn.execute(query)
        for row in result:
            if row.id in self._seen:
                continue
            self._seen.add(row.id)
            self.by_user.setdefault(row.user_id, []).append(
                FreshEvent(row.id, row.item_id, row.event, row.occurred_at.timestamp())
            )
            self.pending.pop(row.user_id, None)
            self.pending[row.user_id] = None
            self._cursor = max(self._cursor or 0, row.id)
            added += 1
        return added

    def take_pending(self, limit: int) -> list[str]:
        """Up to `limit` users whose newest events have not been ranked, oldest first."""
        taken = list(itertools.islice(self.pending, limit))
        for user in taken:
            del self.pending[user]
        return taken

    def _trim(self) -> None:
        if len(self._seen) <= self.max_events:
            return
        log.warning(
            "more than %d events since the served model: keeping the newer half; retrain more often",
            self.max_events,
        )
        keep_from = sorted(self._seen)[len(self._seen) // 2]
        self._seen = {i for i in self._seen if i >= keep_from}
        kept = {user: [e for e in found if e.id >= keep_from] for user, found in self.by_user.items()}
        self.by_user = {user: found for user, found in kept.items() if found}
