"""Every item's display fields and availability, in process memory, kept current by polling.

Serving filters each answer by stock and channel without a database round trip. The view
reloads items whose `updated_at` moved since the last poll (every second by default), and the
process that wrote an item refreshes at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage.tables import items


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str
    price: float | None
    currency: str | None
    url: str | None
    image_url: str | None
    category: str | None
    available: bool
    channel_availability: dict[str, bool]
    stock: int | None

    sellable: bool = field(init=False)  # available, and not known to have no stock

    def __post_init__(self) -> None:  # stored, not a property: the serving hot loop reads it
        object.__setattr__(self, "sellable", self.available and (self.stock is None or self.stock > 0))

    def in_stock(self, channel: str | None) -> bool:
        """Available (on `channel`, when given) and not known to have no stock."""
        return self.sellable and (channel is None or self.channel_availability.get(channel, True))


CLOCK_MARGIN = timedelta(seconds=5)
COLUMNS = (
    items.c.item_id,
    items.c.title,
    items.c.price,
    items.c.currency,
    items.c.url,
    items.c.image_url,
    items.c.category,
    items.c.available,
    items.c.channel_availability,
    items.c.stock,
    items.c.updated_at,
)


class CatalogView:
    def __init__(self) -> None:
        self.items: dict[str, ItemInfo] = {}
        self._since: datetime | None = None

    def get(self, item_id: str) -> ItemInfo | None:
        return self.items.get(item_id)

    async def refresh(self, engine: AsyncEngine) -> int:
        """Load items changed since the last refresh (all of them the first time); returns how many.

        Each poll reads what changed since a few seconds before the previous poll began (by this
        process's clock), a margin for writers whose clocks run a little behind or whose
        transactions commit late. Basing the cursor on the newest `updated_at` instead would
        re-read a whole bulk import, stamped within seconds, on every poll.
        """
        started = datetime.now(UTC)
        query = select(*COLUMNS)
        if self._since is not None:
            query = query.where(items.c.updated_at >= self._since)
        changed = 0
        async with engine.connect() as conn:
            result = await conn.stream(query)
            async for row in result:
                self.items[row.item_id] = ItemInfo(
                    item_id=row.item_id,
                    title=row.title,
                    price=row.price,
                    currency=row.currency,
                    url=row.url,
                    image_url=row.image_url,
                    category=row.category,
                    available=bool(row.available),
                    channel_availability=dict(row.channel_availability or {}),
                    stock=row.stock,
                )
                changed += 1
        self._since = started - CLOCK_MARGIN
        return changed
