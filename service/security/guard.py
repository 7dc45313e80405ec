"""The one guard on every `/v1` route: a valid key (401), the route's scope (403), the key's rate (429).

A route names the scopes that may call it in `opt={"scopes": (...)}`; any one of them grants
access, and `admin` grants all. A route without scopes is refused, so none is open by mistake.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.context import Context
from service.errors import Forbidden, RateLimited, Unauthorized
from service.security.keys import ApiKey
from service.security.scopes import grants


def required_scopes(handler: BaseRouteHandler) -> tuple[str, ...]:
    return tuple(handler.opt.get("scopes", ()))


async def require_key(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    ctx: Context = connection.app.state.ctx
    header = connection.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key = await ctx.keys.verify(secret.strip())
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    scopes = required_scopes(handler)
    if not scopes or not grants(key.scopes, scopes):
        raise Forbidden(f"this key lacks the scope for this route: needs {' or '.join(scopes) or 'admin'}")
    await _limit(ctx, key)
    connection.state.api_key = key
    await ctx.keys.touch(key)


async def _limit(ctx: Context, key: ApiKey) -> None:
    limit = key.rate_limit_per_minute or ctx.settings.api.rate_limit_per_minute
    if limit <= 0:
        return
    verdict = await ctx.limiter.hit(f"key:{key.id}", limit)
    if not verdict.allowed:
        raise RateLimited(f"rate limit of {limit} requests a minute reached", verdict.retry_after)
