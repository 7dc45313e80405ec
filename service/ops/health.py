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
    model: str  # the served version, or why there is none (popular items answer then)


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
        if database == "ok":
            try:
                await ctx.serving.ensure_ready()
            except Exception as exc:
                ctx.serving.model_error = f"cannot load serving state: {type(exc).__name__}"
        model = ctx.serving.describe_model()
        body: Any = Readiness(status if database == "ok" else "unavailable", database, redis, model)
        return Response(body, status_code=200 if database == "ok" else 503)
