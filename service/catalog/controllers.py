"""`PUT /v1/items` (batch upsert), `GET` and `PATCH /v1/items/{item_id}`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, patch, put
from litestar.params import JSONBody, Parameter

from service.catalog.service import get_item, patch_item
from service.context import Ctx
from service.ingest.batch import check_batch_size, prepare_batch, write_batch
from service.ingest.kinds import ItemKind
from service.records import ItemIn, ItemOut, ItemPatch
from service.records.common import ID_PATTERN

ItemId = Annotated[str, Parameter(min_length=1, max_length=128, pattern=ID_PATTERN, description="item id")]


class Upserted(msgspec.Struct):
    upserted: int


class ItemsController(Controller):
    path = "/items"
    tags = ["catalog"]
    opt = {"scopes": ("catalog:write",)}

    @put("/", operation_id="upsertItems")
    async def upsert(self, data: JSONBody[list[ItemIn]], ctx: Ctx) -> Upserted:
        """Insert or update items, all or nothing. Fields left out keep their stored values."""
        api = ctx.settings.api
        check_batch_size(len(data), api.max_batch_records, "Split the batch, or use `shopcast import`.")
        kind = ItemKind(channels=api.channels)
        counts = await write_batch(ctx.engine, kind, prepare_batch(kind, data))
        await ctx.serving.after_catalog_change()
        return Upserted(counts.accepted)

    @get("/{item_id:str}", operation_id="getItem", opt={"scopes": ("catalog:write", "recs:read")})
    async def read(self, item_id: ItemId, ctx: Ctx) -> ItemOut:
        """One item, with its availability per channel."""
        return await get_item(ctx.engine, item_id)

    @patch("/{item_id:str}", operation_id="patchItem")
    async def change(self, item_id: ItemId, data: JSONBody[ItemPatch], ctx: Ctx) -> ItemOut:
        """Change some fields of an item: availability, stock, price, ..."""
        item = await patch_item(ctx.engine, item_id, data, ctx.settings.api.channels)
        await ctx.serving.after_catalog_change()
        return item
