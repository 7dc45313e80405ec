"""Analytics endpoints (scope `analytics:read`), answered from the daily roll-ups."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.params import Parameter

from service.analytics import queries
from service.analytics.queries import Period
from service.context import Ctx
from service.errors import BadParameter
from service.retraining import registry_for
from service.serving.controllers import Category, Channel, checked_channel

READ = {"scopes": ("analytics:read",)}
PeriodName = Annotated[
    Literal["1d", "7d", "30d", "90d"], Parameter(description="the last N whole UTC days up to `until`")
]
Until = Annotated[date | None, Parameter(description="the period's last day (UTC, ISO 8601); default today")]
Limit = Annotated[int, Parameter(ge=1, le=500, description="rows per list")]


EARLIEST, LATEST = date(1970, 1, 1), date(9999, 1, 1)


def _period(name: str, until: date | None) -> Period:
    if until is not None and not EARLIEST <= until <= LATEST:
        raise BadParameter("until", f"must be a day from {EARLIEST} to {LATEST}")
    return Period.ending(name, until)


class AnalyticsController(Controller):
    path = "/analytics"
    tags = ["analytics"]
    opt = READ

    @get("/items", operation_id="itemAnalytics")
    async def item_analytics(
        self,
        ctx: Ctx,
        period: PeriodName = "7d",
        until: Until = None,
        channel: Channel = None,
        category: Category = None,
        limit: Limit = 20,
    ) -> dict[str, Any]:
        """Hot items (revenue, units, views, view-to-purchase conversion, change against the
        period before) and cold ones (available, fewest views and sales, days of stock cover)."""
        return await queries.item_report(
            ctx.engine,
            _period(period, until),
            channel=checked_channel(ctx, channel),
            category=category,
            limit=limit,
        )

    @get("/channels", operation_id="channelAnalytics")
    async def channel_analytics(
        self, ctx: Ctx, period: PeriodName = "30d", until: Until = None
    ) -> dict[str, Any]:
        """Revenue share, active users, buyers and conversion per channel; buyers on several channels."""
        return await queries.channel_report(ctx.engine, _period(period, until))

    @get("/campaigns", operation_id="campaignAnalytics")
    async def campaign_analytics(self, ctx: Ctx, limit: Limit = 50) -> dict[str, Any]:
        """Every campaign's results in one table, newest first."""
        return await queries.campaign_table(ctx.engine, limit=limit)

    @get("/models", operation_id="modelAnalytics")
    async def model_analytics(
        self, ctx: Ctx, period: PeriodName = "30d", until: Until = None
    ) -> dict[str, Any]:
        """Offline metrics of each model version, and online click-through of recommendations
        (clicks reported as events with the answer's `recommendation_id`)."""
        return await queries.model_report(ctx.engine, registry_for(ctx), _period(period, until))
