"""Staff rules for recommendations, in process memory: pinned items go first, blocked never appear.

Rules live in the `merch_rules` table (channel "" means every channel) and are reloaded every
few seconds, and at once by the process that changed them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage.tables import merch_rules

EVERY_CHANNEL = ""


@dataclass(frozen=True)
class Rule:
    item_id: str
    channel: str
    action: str  # "pin" | "block"
    position: int


class MerchRules:
    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self._blocked: dict[str, set[str]] = {}
        self._pinned: dict[str, list[str]] = {}

    def blocked(self, channel: str | None) -> set[str]:
        every = self._blocked.get(EVERY_CHANNEL, set())
        return every | self._blocked.get(channel, set()) if channel else every

    def pinned(self, channel: str | None) -> list[str]:
        every = self._pinned.get(EVERY_CHANNEL, [])
        return every + [i for i in self._pinned.get(channel, []) if i not in every] if channel else every

    async def refresh(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(merch_rules).order_by(merch_rules.c.position))).all()
        self.rules = [Rule(r.item_id, r.channel, r.action, r.position) for r in rows]
        blocked: dict[str, set[str]] = {}
        pinned: dict[str, list[str]] = {}
        for rule in self.rules:
            if rule.action == "block":
                blocked.setdefault(rule.channel, set()).add(rule.item_id)
            else:
                pinned.setdefault(rule.channel, []).append(rule.item_id)
        self._blocked, self._pinned = blocked, pinned
