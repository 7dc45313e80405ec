"""Trending items per time window and channel, from the live events (not the model).

Every serving process aggregates the last 30 days of events once a minute (one grouped query),
weighting event types as the model does; `1h`, `24h`, `7d` and `30d` rank by the weighted
events inside each window. Where a window has too few items, the next wider window and then
the model's time-decayed popularity fill in.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage.tables import events

WINDOWS: dict[str, float] = {"1h": 3_600.0, "24h": 86_400.0, "7d": 7 * 86_400.0, "30d": 30 * 86_400.0}
ALL_CHANNELS = ""


class TrendingBoard:
    def __init__(self) -> None:
        # (window, channel or "") -> item ids, best first, with their weighted counts
        self.rankings: dict[tuple[str, str], list[tuple[str, float]]] = {}
        self.refreshed_at = 0.0

    def ranking(self, window: str, channel: str | None) -> list[tuple[str, float]]:
        """The window's ranking, then the wider windows' items not in it yet."""
        out: list[tuple[str, float]] = []
        seen: set[str] = set()
        names = list(WINDOWS)
        for name in names[names.index(window) :]:
            for item_id, score in self.rankings.get((name, channel or ALL_CHANNELS), []):
                if item_id not in seen:
                    seen.add(item_id)
                    out.append((item_id, score))
        return out

    async def refresh(
        self, engine: AsyncEngine, event_weights: dict[str, float], now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        bounds = [datetime.fromtimestamp(now - span, UTC) for span in WINDOWS.values()]
        bucket = case(
            *((events.c.occurred_at >= bound, index) for index, bound in enumerate(bounds[:-1])),
            else_=len(bounds) - 1,
        ).label("bucket")
        query = (
            select(events.c.item_id, events.c.channel, events.c.event, bucket, func.count())
            .where(events.c.occurred_at >= bounds[-1])
            .group_by(events.c.item_id, events.c.channel, events.c.event, literal_column("bucket"))
        )
        totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        async with engine.connect() as conn:
            result = await conn.stream(query)
            async for item_id, channel, event, index, count in result:
                weight = event_weights.get(event, 0.0) * count
                if not weight:
                    continue
                for name in list(WINDOWS)[index:]:  # an event in a window counts in every wider one
                    totals[(name, ALL_CHANNELS)][item_id] += weight
                    if channel:
                        totals[(name, channel)][item_id] += weight
        self.rankings = {
            key: sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
            for key, scores in totals.items()
        }
        self.refreshed_at = now
