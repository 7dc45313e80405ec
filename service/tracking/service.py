"""What signed links do: record a click, withdraw or change consent.

A click is stored as a `click` event of the user on the item, with the delivery key as its
session, so attribution can tie later purchases to the message that was clicked. Consent
changes are `user_consents` rows with the source `link`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.records.users import CONSENT_CHANNELS
from service.storage.tables import events, user_consents, users


async def record_click(
    engine: AsyncEngine, user_id: str | None, item_id: str | None, delivery_key: str
) -> bool:
    """Store the click; False when there is no user or item to tie it to."""
    if not user_id or not item_id:
        return False
    async with engine.begin() as conn:
        await conn.execute(
            insert(events).values(
                user_id=user_id,
                item_id=item_id,
                event="click",
                occurred_at=datetime.now(UTC),
                session_id=delivery_key[:128],
            )
        )
    return True


async def set_consents(
    engine: AsyncEngine, user_id: str, consents: dict[str, bool], source: str = "link"
) -> bool:
    """Set the user's consent per channel; False when the user is unknown (erased)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        exists = (await conn.execute(select(users.c.user_id).where(users.c.user_id == user_id))).first()
        if exists is None:
            return False
        for channel, granted in consents.items():
            await conn.execute(
                delete(user_consents).where(
                    user_consents.c.user_id == user_id, user_consents.c.channel == channel
                )
            )
            await conn.execute(
                insert(user_consents).values(
                    user_id=user_id, channel=channel, granted=granted, source=source, updated_at=now
                )
            )
    return True


async def consents_of(engine: AsyncEngine, user_id: str) -> dict[str, bool]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(user_consents.c.channel, user_consents.c.granted).where(user_consents.c.user_id == user_id)
        )
        found = {c: bool(g) for c, g in rows}
    return {channel: found.get(channel, False) for channel in CONSENT_CHANNELS}
