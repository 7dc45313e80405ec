"""`PUT /v1/users`, `GET /v1/users?email=`, `GET|DELETE /v1/users/{user_id}`, and export."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, put
from litestar.params import JSONBody, Parameter

from service.catalog.controllers import Upserted
from service.context import Ctx
from service.ingest.batch import check_batch_size, prepare_batch, write_batch
from service.ingest.kinds import UserKind
from service.records import UserIn, UserOut
from service.records.common import ID_PATTERN
from service.records.users import Email
from service.users.service import (
    Erasure,
    UserExport,
    erase_user,
    export_user,
    find_by_email,
    get_user,
)

UserId = Annotated[str, Parameter(min_length=1, max_length=128, pattern=ID_PATTERN, description="user id")]


class UsersController(Controller):
    path = "/users"
    tags = ["users"]
    opt = {"scopes": ("users:write",)}

    @put("/", operation_id="upsertUsers")
    async def upsert(self, data: JSONBody[list[UserIn]], ctx: Ctx) -> Upserted:
        """Insert or update users, all or nothing. Fields left out keep their stored values.

        Email, phone and push tokens are encrypted before they are stored.
        """
        check_batch_size(len(data), ctx.settings.api.max_batch_records, "Split the batch.")
        kind = UserKind(cipher=ctx.cipher)
        counts = await write_batch(ctx.engine, kind, prepare_batch(kind, data))
        return Upserted(counts.accepted)

    @get("/", operation_id="findUsers")
    async def find(
        self, email: Annotated[Email, Parameter(description="exact email")], ctx: Ctx
    ) -> list[UserOut]:
        """Users with this email (matched through a keyed hash; emails are stored encrypted)."""
        return await find_by_email(ctx.engine, ctx.cipher, email)

    @get("/{user_id:str}", operation_id="getUser")
    async def read(self, user_id: UserId, ctx: Ctx) -> UserOut:
        return await get_user(ctx.engine, ctx.cipher, user_id)

    @get("/{user_id:str}/export", operation_id="exportUser")
    async def export(self, user_id: UserId, ctx: Ctx) -> UserExport:
        """Everything held on this user: profile, consents and every event."""
        return await export_user(ctx.engine, ctx.cipher, user_id)

    @delete("/{user_id:str}", operation_id="eraseUser", status_code=200)
    async def erase(self, user_id: UserId, ctx: Ctx) -> Erasure:
        """Erase the profile, consents and events of this user. Idempotent."""
        return await erase_user(ctx.engine, user_id)
