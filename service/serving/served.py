"""How many answers each model version served per day: counted in memory, flushed to the store.

The hot path only increments a counter; each serving process adds its counts to
`recommendation_daily` every few seconds, which is what online click-through is measured
against. Counts that cannot be written (database away) wait for the next flush.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage import rollups

_EPOCH = date(1970, 1, 1)


class ServedCounter:
    def __init__(self) -> None:
        self._counts: Counter[tuple[int, str]] = Counter()

    def add(self, version: str | None) -> None:
        if version:
            self._counts[int(time.time() // 86_400), version] += 1

    async def flush(self, engine: AsyncEngine) -> None:
        counts, self._counts = self._counts, Counter()
        if not counts:
            return
        try:
            async with engine.begin() as conn:
                await rollups.add_served(
                    conn, {(_EPOCH + timedelta(days=d), v): n for (d, v), n in counts.items()}
                )
        except BaseException:
            self._counts.update(counts)
            raise
