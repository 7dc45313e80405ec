"""`/health/live` (the process answers) and `/health/ready` (the database answers; Redis reported)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Response, get
from sqlalchemy import text

from service.context import Ctx


class Readiness(msgspec.Struct):
    status: str
    database: str
    redis: str


class HealthController(Controller):
    path = "/health"
    tags = ["operations"]
    include_in_schema = True

    @get("/live", operation_id="live")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", operation_id="ready")
    async def ready(self, ctx: Ctx) -> Response[Readiness]:
        """503 when the database does not answer; Redis down only degrades (nothing depends on it)."""
        try:
            async with ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            database = "ok"
        except Exception:
            database = "unavailable"
        if not ctx.redis.configured:
            redis = "not configured"
        else:
            redis = "ok" if await ctx.redis.ping() else "unavailable"
        status = "ok" if database == "ok" and redis != "unavailable" else "degraded"
        body: Any = Readiness(status if database == "ok" else "unavailable", database, redis)
        return Response(body, status_code=200 if database == "ok" else 503)
