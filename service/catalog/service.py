"""Reading and patching catalog items."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import FieldProblem, InvalidInput, NotFound
from service.records.items import ItemOut, ItemPatch, item_columns, item_out
from service.storage.tables import items


async def get_item(engine: AsyncEngine, item_id: str) -> ItemOut:
    async with engine.connect() as conn:
        row = (await conn.execute(select(items).where(items.c.item_id == item_id))).one_or_none()
    if row is None:
        raise NotFound(f"no item {item_id!r}")
    return item_out(row)


async def patch_item(
    engine: AsyncEngine, item_id: str, patch: ItemPatch, channels: tuple[str, ...]
) -> ItemOut:
    """Change only the fields given (availability, stock, price, ...); 404 for an unknown item."""
    try:
        columns = item_columns(patch, channels=channels)
    except FieldProblem as problem:
        raise InvalidInput.from_problems("invalid item patch; nothing changed", [problem]) from None
    async with engine.begin() as conn:
        if columns:
            result = await conn.execute(
                update(items)
                .where(items.c.item_id == item_id)
                .values(**columns, updated_at=datetime.now(UTC))
            )
            if not result.rowcount:
                raise NotFound(f"no item {item_id!r}")
        row = (await conn.execute(select(items).where(items.c.item_id == item_id))).one_or_none()
    if row is None:
        raise NotFound(f"no item {item_id!r}")
    return item_out(row)
