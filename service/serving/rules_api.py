"""`GET /v1/rules`, `PUT|DELETE /v1/rules/{item_id}`: staff pin or block items in recommendations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, put
from litestar.params import JSONBody, Parameter
from sqlalchemy import and_, select
from sqlalchemy import delete as sql_delete

from service.context import Context, Ctx
from service.errors import NotFound
from service.records.common import ID_PATTERN
from service.serving.controllers import checked_channel
from service.serving.rules import EVERY_CHANNEL
from service.storage.tables import merch_rules

ItemId = Annotated[str, Parameter(min_length=1, max_length=128, pattern=ID_PATTERN, description="item id")]


class RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["pin", "block"]
    channel: Annotated[str, msgspec.Meta(max_length=32)] | None = None  # None: every channel
    position: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0  # pinned items in ascending position
    note: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class RuleOut(msgspec.Struct):
    item_id: str
    action: str
    channel: str | None
    position: int
    note: str | None


def _channel(ctx: Context, channel: str | None) -> str:
    return checked_channel(ctx, channel) or EVERY_CHANNEL


class RulesController(Controller):
    path = "/rules"
    tags = ["recommendations"]
    opt = {"scopes": ("catalog:write",)}

    @get("/", operation_id="listRules", opt={"scopes": ("catalog:write", "recs:read")})
    async def list_rules(self, ctx: Ctx) -> list[RuleOut]:
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(select(merch_rules).order_by(merch_rules.c.position))).all()
        return [RuleOut(r.item_id, r.action, r.channel or None, r.position, r.note) for r in rows]

    @put("/{item_id:str}", operation_id="setRule")
    async def set_rule(self, item_id: ItemId, data: JSONBody[RuleIn], ctx: Ctx) -> RuleOut:
        """Pin (first in every answer where it is in stock) or block an item, on one channel or all."""
        channel = _channel(ctx, data.channel)
        where = and_(merch_rules.c.item_id == item_id, merch_rules.c.channel == channel)
        async with ctx.engine.begin() as conn:
            await conn.execute(sql_delete(merch_rules).where(where))
            await conn.execute(
                merch_rules.insert().values(
                    item_id=item_id,
                    channel=channel,
                    action=data.action,
                    position=data.position,
                    note=data.note,
                    updated_at=datetime.now(UTC),
                )
            )
        await ctx.serving.rules.refresh(ctx.engine)
        return RuleOut(item_id, data.action, channel or None, data.position, data.note)

    @delete("/{item_id:str}", operation_id="deleteRule")
    async def delete_rule(
        self, item_id: ItemId, ctx: Ctx, channel: Annotated[str | None, Parameter(max_length=32)] = None
    ) -> None:
        where = and_(merch_rules.c.item_id == item_id, merch_rules.c.channel == _channel(ctx, channel))
        async with ctx.engine.begin() as conn:
            removed = (await conn.execute(sql_delete(merch_rules).where(where))).rowcount
        if not removed:
            raise NotFound(
                f"no rule for item {item_id!r} on {'channel ' + channel if channel else 'every channel'}"
            )
        await ctx.serving.rules.refresh(ctx.engine)
