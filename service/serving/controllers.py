"""Recommendation endpoints for storefronts (scope `recs:read`).

Every answer lists items with their display fields, score and source, and carries the model
version and a recommendation id that storefronts send back with clicks.
"""

from __future__ import annotations

import itertools
import os
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody, Parameter

from service.context import Context, Ctx
from service.errors import BadParameter, NotFound
from service.records.common import ID_PATTERN
from service.serving.answers import Answer, Filters

Count = Annotated[int, Parameter(ge=1, le=1000, description="how many items (1 to 1000)")]
Channel = Annotated[str | None, Parameter(max_length=32, description="only items available on this channel")]
Category = Annotated[
    str | None,
    Parameter(max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$", description="only items of this category"),
]
Price = Annotated[float | None, Parameter(ge=0, le=1e12)]
Exclude = Annotated[
    Literal["purchased", "interacted", "none"],
    Parameter(description="leave out what the user bought (default), interacted with, or nothing"),
]
Window = Annotated[Literal["1h", "24h", "7d", "30d"], Parameter(description="trending over this window")]
EntityId = Annotated[str, Parameter(min_length=1, max_length=128, pattern=ID_PATTERN)]
RECS = {"scopes": ("recs:read",)}


class _Ids:
    """Recommendation ids: a random prefix per process and a counter (no syscall per id)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix, self.counter = os.urandom(8).hex(), itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_IDS = _Ids()
os.register_at_fork(after_in_child=_IDS.reset)  # worker processes forked after import get their own


def recommendation_id(ctx: Context, model_version: str | None) -> str:
    """The answer's id, `VERSION.UNIQUE`: a click reported with it tells which model earned it."""
    ctx.serving.served.add(model_version)
    return f"{model_version}.{_IDS.next()}" if model_version else _IDS.next()


class RecommendedItem(msgspec.Struct):
    item_id: str
    title: str
    price: float | None
    currency: str | None
    url: str | None
    image_url: str | None
    score: float
    source: str  # als | similar | bought_together | content | trending | buy_again | pinned


class Recommendations(msgspec.Struct):
    items: list[RecommendedItem]
    model_version: str | None
    recommendation_id: str
    strategy: str  # model | fresh | session | cold_start | no_model | similar | trending | buy_again


class UserRecommendations(Recommendations, kw_only=True):
    user_id: str


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_ids: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]],
        msgspec.Meta(min_length=1, max_length=1000),
    ]
    n: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    channel: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    category: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    exclude: Literal["purchased", "interacted", "none"] = "purchased"


class BatchResponse(msgspec.Struct):
    results: list[UserRecommendations]
    model_version: str | None


class SessionEvent(msgspec.Struct, forbid_unknown_fields=True):
    item_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    event: Annotated[str, msgspec.Meta(max_length=32)] = "view"


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[SessionEvent], msgspec.Meta(max_length=1000)] = []
    n: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    channel: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    category: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    exclude: Literal["purchased", "interacted", "none"] = "interacted"


def checked_channel(ctx: Context, channel: str | None) -> str | None:
    """The channel, when it is one of the configured ones (400 naming it otherwise)."""
    if channel is not None and channel not in ctx.settings.api.channels:
        raise BadParameter(
            "channel", f"unknown channel {channel!r}; known: {', '.join(ctx.settings.api.channels)}"
        )
    return channel


def _filters(
    ctx: Context,
    channel: str | None,
    category: str | None = None,
    min_price: float | None = None,
    max_price: float | None = None,
) -> Filters:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise BadParameter("min_price", "must not be above max_price")
    return Filters(
        channel=checked_channel(ctx, channel), category=category, min_price=min_price, max_price=max_price
    )


def _body(ctx: Context, answer: Answer, n: int) -> Recommendations:
    version = answer.model_version
    return Recommendations(_items(answer, n), version, recommendation_id(ctx, version), answer.strategy)


def _items(answer: Answer, n: int) -> list[RecommendedItem]:
    """Each pick's display fields (its score was rounded to 6 places where it was ranked)."""
    items = []
    for pick in answer.picks[:n]:
        i = pick.item
        items.append(
            RecommendedItem(
                i.item_id, i.title, i.price, i.currency, i.url, i.image_url, pick.score, pick.source
            )
        )
    return items


def user_answer(ctx: Context, user_id: str, n: int, filters: Filters, exclude: str) -> UserRecommendations:
    """The body of a user's recommendations (the route's and the fast path's)."""
    answer = ctx.answers.for_user(user_id, n, filters, exclude)
    version = answer.model_version
    return UserRecommendations(
        _items(answer, n), version, recommendation_id(ctx, version), answer.strategy, user_id=user_id
    )


class UserRecommendationsController(Controller):
    path = "/users"
    tags = ["recommendations"]
    opt = RECS

    @get("/{user_id:str}/recommendations", operation_id="recommendForUser")
    async def recommend(
        self,
        user_id: EntityId,
        ctx: Ctx,
        n: Count = 10,
        channel: Channel = None,
        category: Category = None,
        exclude: Exclude = "purchased",
        min_price: Price = None,
        max_price: Price = None,
    ) -> UserRecommendations:
        """Items for this user. Unknown users get trending items (strategy `cold_start`)."""
        await ctx.serving.ensure_ready()
        return user_answer(ctx, user_id, n, _filters(ctx, channel, category, min_price, max_price), exclude)

    @get("/{user_id:str}/buy-again", operation_id="buyAgain")
    async def buy_again(
        self, user_id: EntityId, ctx: Ctx, n: Count = 10, channel: Channel = None
    ) -> Recommendations:
        """What this user bought and is likely to buy again now (empty for users with no purchases)."""
        await ctx.serving.ensure_ready()
        return _body(ctx, ctx.answers.buy_again(user_id, n, _filters(ctx, channel)), n)


class ItemRecommendationsController(Controller):
    path = "/items"
    tags = ["recommendations"]
    opt = RECS

    @get("/trending", operation_id="trendingItems")
    async def trending(
        self,
        ctx: Ctx,
        n: Count = 10,
        window: Window = "24h",
        channel: Channel = None,
        category: Category = None,
    ) -> Recommendations:
        """The most engaged-with items in the window (wider windows, then the model, fill in)."""
        await ctx.serving.ensure_ready()
        return _body(ctx, ctx.answers.trending(n, _filters(ctx, channel, category), window), n)

    @get("/{item_id:str}/similar", operation_id="similarItems")
    async def similar(
        self, item_id: EntityId, ctx: Ctx, n: Count = 10, channel: Channel = None, category: Category = None
    ) -> Recommendations:
        """Items like this one: neighbours (who engaged with what), then content. 404: unknown item."""
        await ctx.serving.ensure_ready()
        answer = ctx.answers.similar(
            item_id, n, _filters(ctx, channel, category), ("item_knn", "content", "als")
        )
        if answer is None:
            raise NotFound(f"item {item_id!r} is neither in the catalog nor in the model")
        return _body(ctx, answer, n)

    @get("/{item_id:str}/bought-together", operation_id="boughtTogether")
    async def bought_together(
        self, item_id: EntityId, ctx: Ctx, n: Count = 10, channel: Channel = None
    ) -> Recommendations:
        """Items bought in the same baskets as this one (then similar items). 404 for unknown items."""
        await ctx.serving.ensure_ready()
        answer = ctx.answers.similar(item_id, n, _filters(ctx, channel), ("co_purchase", "item_knn"))
        if answer is None:
            raise NotFound(f"item {item_id!r} is neither in the catalog nor in the model")
        return _body(ctx, answer, n)


class BatchRecommendationsController(Controller):
    path = "/"
    tags = ["recommendations"]
    opt = RECS

    @post("/recommendations/batch", operation_id="recommendBatch", status_code=200)
    async def batch(self, data: JSONBody[BatchRequest], ctx: Ctx) -> BatchResponse:
        """Recommendations for up to 1,000 users at once (campaigns, exports)."""
        await ctx.serving.ensure_ready()
        channel = checked_channel(ctx, data.channel)
        results = [
            user_answer(ctx, user_id, data.n, Filters(channel=channel, category=data.category), data.exclude)
            for user_id in data.user_ids
        ]
        return BatchResponse(results, ctx.serving.version)

    @post("/sessions/recommendations", operation_id="recommendForSession", status_code=200)
    async def session(self, data: JSONBody[SessionRequest], ctx: Ctx) -> Recommendations:
        """For an anonymous visitor, from the items of this session (trending when there are none)."""
        await ctx.serving.ensure_ready()
        events = [(e.item_id, e.event) for e in data.items]
        filters = Filters(channel=checked_channel(ctx, data.channel), category=data.category)
        return _body(ctx, ctx.answers.for_session(events, data.n, filters, data.exclude), data.n)


SERVING_CONTROLLERS = [
    UserRecommendationsController,
    ItemRecommendationsController,
    BatchRecommendationsController,
]
