"""Users: read (decrypted), find by email through the blind index, export and erase."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.errors import NotFound
from service.records.users import ConsentOut, UserOut
from service.security.crypto import PersonalDataCipher
from service.storage.tables import events, metadata, user_consents, users


class EventOut(msgspec.Struct, kw_only=True):
    event_id: str | None
    item_id: str
    event: str
    timestamp: datetime
    channel: str | None
    quantity: float | None
    price: float | None
    session_id: str | None


class UserExport(msgspec.Struct, kw_only=True):
    """Everything shopcast holds on one user."""

    exported_at: datetime
    user: UserOut | None
    events: list[EventOut]


class Erasure(msgspec.Struct):
    user_id: str
    deleted: dict[str, int]


def _decrypt(cipher: PersonalDataCipher, blob: bytes | None, user_id: str, field: str) -> str | None:
    return cipher.decrypt(blob, context=f"users/{user_id}/{field}") if blob else None


async def _user_out(conn: AsyncConnection, cipher: PersonalDataCipher, row: Any) -> UserOut:
    m = row._mapping
    uid = m["user_id"]
    consent_rows = await conn.execute(select(user_consents).where(user_consents.c.user_id == uid))
    tokens = _decrypt(cipher, m["push_tokens_ct"], uid, "push_tokens")
    return UserOut(
        user_id=uid,
        email=_decrypt(cipher, m["email_ct"], uid, "email"),
        phone=_decrypt(cipher, m["phone_ct"], uid, "phone"),
        push_tokens=msgspec.json.decode(tokens) if tokens else [],
        locale=m["locale"],
        timezone=m["timezone"],
        consents={
            c.channel: ConsentOut(granted=c.granted, updated_at=c.updated_at, source=c.source)
            for c in consent_rows
        },
        attributes=dict(m["attributes"] or {}),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


async def get_user(engine: AsyncEngine, cipher: PersonalDataCipher, user_id: str) -> UserOut:
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.user_id == user_id))).one_or_none()
        if row is None:
            raise NotFound(f"no user {user_id!r}")
        return await _user_out(conn, cipher, row)


async def find_by_email(engine: AsyncEngine, cipher: PersonalDataCipher, email: str) -> list[UserOut]:
    index = cipher.blind_index("email", email)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(users).where(users.c.email_bidx == index))).all()
        return [await _user_out(conn, cipher, row) for row in rows]


async def export_user(engine: AsyncEngine, cipher: PersonalDataCipher, user_id: str) -> UserExport:
    """The profile, consents and every event of a user; 404 when nothing at all is held."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.user_id == user_id))).one_or_none()
        profile = await _user_out(conn, cipher, row) if row is not None else None
        result = await conn.execute(
            select(events).where(events.c.user_id == user_id).order_by(events.c.occurred_at, events.c.id)
        )
        history = [
            EventOut(
                event_id=e.event_id,
                item_id=e.item_id,
                event=e.event,
                timestamp=e.occurred_at,
                channel=e.channel,
                quantity=e.quantity,
                price=e.price,
                session_id=e.session_id,
            )
            for e in result
        ]
    if profile is None and not history:
        raise NotFound(f"nothing is held on user {user_id!r}")
    return UserExport(exported_at=datetime.now(UTC), user=profile, events=history)


def tables_with_user_id() -> list[Table]:
    """Every table that can hold a user's data, found in the schema itself."""
    return [table for table in metadata.sorted_tables if "user_id" in table.c]


async def erase_user(engine: AsyncEngine, user_id: str) -> Erasure:
    """Delete every row keyed by this user, in one transaction. Idempotent."""
    deleted: dict[str, int] = {}
    async with engine.begin() as conn:
        for table in reversed(tables_with_user_id()):
            result = await conn.execute(delete(table).where(table.c.user_id == user_id))
            deleted[table.name] = result.rowcount or 0
    return Erasure(user_id=user_id, deleted=deleted)


async def forget_push_tokens(
    engine: AsyncEngine, cipher: PersonalDataCipher, user_id: str, stale: tuple[str, ...]
) -> int:
    """Remove push tokens a provider reported unregistered; how many were removed."""
    async with engine.begin() as conn:
        blob = (
            await conn.execute(
                select(users.c.push_tokens_ct).where(users.c.user_id == user_id).with_for_update()
            )
        ).scalar()
        if not blob:
            return 0
        tokens: list[str] = msgspec.json.decode(cipher.decrypt(blob, context=f"users/{user_id}/push_tokens"))
        kept = [t for t in tokens if t not in set(stale)]
        if len(kept) == len(tokens):
            return 0
        sealed = cipher.encrypt(msgspec.json.encode(kept).decode(), context=f"users/{user_id}/push_tokens")
        await conn.execute(
            update(users)
            .where(users.c.user_id == user_id)
            .values(push_tokens_ct=sealed if kept else None, updated_at=datetime.now(UTC))
        )
    return len(tokens) - len(kept)
