"""What signed links do: record a click or an open, withdraw or change consent.

A click is stored twice: as a `click` event of the user on the item (a signal for training,
with the delivery key as its session), and as a `message_events` row tied to the message and
its campaign, which is what campaign reports and attribution read. Opens and unsubscribes from
a message are `message_events` rows too. Consent changes are `user_consents` rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns.planner import campaign_of_key
from service.records.users import CONSENT_CHANNELS
from service.storage.tables import message_events, user_consents, users
from service.storage.writes import insert_events


def _message_event(
    kind: str, user_id: str | None, delivery_key: str, item_id: str | None = None
) -> dict[str, object]:
    return {
        "delivery_key": delivery_key[:200],
        "campaign_id": campaign_of_key(delivery_key),
        "user_id": user_id,
        "kind": kind,
        "item_id": item_id,
        "occurred_at": datetime.now(UTC),
    }


async def record_message_event(
    engine: AsyncEngine, kind: str, user_id: str | None, delivery_key: str, item_id: str | None = None
) -> None:
    """An open or an unsubscribe that came through one message's link."""
    if not delivery_key or not user_id:
        return
    async with engine.begin() as conn:
        await conn.execute(
            insert(message_events).values(**_message_event(kind, user_id, delivery_key, item_id))
        )


async def record_click(
    engine: AsyncEngine, user_id: str | None, item_id: str | None, delivery_key: str
) -> bool:
    """Store the click; False when there is no user or item to tie it to."""
    if not user_id or not item_id:
        return False
    async with engine.begin() as conn:
        click = {"user_id": user_id, "item_id": item_id, "event": "click", "occurred_at": datetime.now(UTC)}
        await insert_events(conn, [{**click, "session_id": delivery_key[:128]}])
        if delivery_key:
            await conn.execute(
                insert(message_events).values(**_message_event("click", user_id, delivery_key, item_id))
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
