"""The storefront hot path: `GET /v1/users/{id}/recommendations`, answered in front of Litestar.

Litestar's handler machinery (routing, parameter parsing and validation, dependency injection,
response encoding) costs as much as ranking and filtering a user's answer (bench/serve.py). So
this ASGI wrapper answers the common request itself: plainly valid parameters and a key that
may call the route. It uses the route's own code (`user_answer`), response type, metrics and
access log. Everything else (a parameter it does not take or that is not plainly valid, a key
refused, a failure of any kind) goes on to Litestar, which answers as the route always does; the
key check made here is handed over, so no request is checked or rate-counted twice.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from urllib.parse import parse_qsl

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from service.context import Context
from service.ops.access_log import record
from service.records.common import ID_PATTERN
from service.security.guard import authorize, hand_over
from service.security.keys import ApiKey
from service.serving.answers import EXCLUDES, Filters
from service.serving.controllers import RECS, user_answer

ROUTE = "/v1/users/{user_id}/recommendations"
_PREFIX, _SUFFIX = "/v1/users/", "/recommendations"
_USER_ID = re.compile(ID_PATTERN)
_COUNT = re.compile(r"[1-9][0-9]{0,3}")
_CATEGORY = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_SCOPES: tuple[str, ...] = RECS["scopes"]
_ENCODE = msgspec.json.Encoder().encode


class UserQuery(msgspec.Struct, frozen=True):
    n: int = 10
    channel: str | None = None
    category: str | None = None
    exclude: str = "purchased"


@lru_cache(4096)
def parse_query(query_string: bytes, channels: tuple[str, ...]) -> UserQuery | None:
    """The parameters when each is plainly valid, None when Litestar should judge them."""
    fields: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, separator="&"):
        if name in fields or name not in ("n", "channel", "category", "exclude"):
            return None
        fields[name] = value
    n = fields.get("n", "10")
    if not _COUNT.fullmatch(n) or int(n) > 1000:
        return None
    channel, category = fields.get("channel"), fields.get("category")
    if channel is not None and channel not in channels:
        return None
    if category is not None and not _CATEGORY.fullmatch(category):
        return None
    exclude = fields.get("exclude", "purchased")
    if exclude not in EXCLUDES:
        return None
    return UserQuery(int(n), channel, category, exclude)


def user_id_of(path: str) -> str | None:
    """The user id of a recommendations path, when it is a valid one."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    user_id = path[len(_PREFIX) : -len(_SUFFIX)]
    plain = 0 < len(user_id) <= 128 and "/" not in user_id and _USER_ID.fullmatch(user_id)
    return user_id if plain else None


def serve_user_recommendations(app: ASGIApp) -> ASGIApp:
    """Wrap Litestar's ASGI handler (`Litestar.asgi_handler`) with the fast path."""

    async def fast_path(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "GET":
            await app(scope, receive, send)
            return
        user_id = user_id_of(scope["path"])
        if user_id is None:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        ctx: Context = scope["litestar_app"].state.ctx
        body = await _answer(ctx, scope, user_id)
        if body is None:
            await app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
        record("GET", ROUTE, 200, started)

    return fast_path


async def _answer(ctx: Context, scope: Scope, user_id: str) -> bytes | None:
    """The encoded answer, or None (after handing the key check over) for Litestar to answer."""
    key: ApiKey | None = None
    try:
        key = await authorize(ctx, scope, _SCOPES)
    except Exception as exc:  # Litestar's middleware raises it, and its handlers answer
        hand_over(scope, _SCOPES, None, exc)
        return None
    query = parse_query(scope["query_string"], ctx.settings.api.channels)
    if query is None:
        hand_over(scope, _SCOPES, key, None)
        return None
    try:
        await ctx.serving.ensure_ready()
        filters = Filters(channel=query.channel, category=query.category)
        return _ENCODE(user_answer(ctx, user_id, query.n, filters, query.exclude))
    except Exception:  # the route meets the same failure, and answers it as it always does
        hand_over(scope, _SCOPES, key, None)
        return None
