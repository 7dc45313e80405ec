"""The suppression list: addresses never to be mailed again, whoever they belong to.

Entries are the keyed hash of the address (the same blind index users are looked up by), so
the list holds no address in the clear and survives a user's erasure: someone who asked never
to be mailed is not mailed when they come back under another id. Hard bounces (an SMTP 5xx on
the recipient) are added by the delivery loop; staff add and remove entries through the API.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.security.crypto import PersonalDataCipher
from service.storage.tables import suppressions

REASONS = ("hard_bounce", "complaint", "staff")


class Suppressions:
    def __init__(self, engine: AsyncEngine, cipher: PersonalDataCipher) -> None:
        self.engine = engine
        self.cipher = cipher

    def _keys(self, addresses: Iterable[str]) -> list[str]:
        return sorted({self.cipher.blind_index("email", a) for a in addresses})

    async def add(self, addresses: Iterable[str], reason: str) -> int:
        """Suppress these addresses; how many were not suppressed before."""
        keys = self._keys(addresses)
        async with self.engine.begin() as conn:
            known = set(
                (
                    await conn.execute(
                        select(suppressions.c.email_bidx).where(suppressions.c.email_bidx.in_(keys))
                    )
                ).scalars()
            )
            new = [k for k in keys if k not in known]
            if new:
                at = datetime.now(UTC)
                await conn.execute(
                    insert(suppressions), [{"email_bidx": k, "reason": reason, "created_at": at} for k in new]
                )
        return len(new)

    async def remove(self, addresses: Iterable[str]) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(suppressions).where(suppressions.c.email_bidx.in_(self._keys(addresses)))
            )
        return int(result.rowcount)

    async def check(self, addresses: Iterable[str]) -> dict[str, str | None]:
        """Each address, and why it is suppressed (None: it is not)."""
        wanted = {a: self.cipher.blind_index("email", a) for a in addresses}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(suppressions.c.email_bidx, suppressions.c.reason).where(
                    suppressions.c.email_bidx.in_(list(wanted.values()))
                )
            )
            reasons = dict(rows.all())
        return {a: reasons.get(k) for a, k in wanted.items()}

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(suppressions.c.reason, func.count()).group_by(suppressions.c.reason)
            )
            return {reason: int(n) for reason, n in rows}
