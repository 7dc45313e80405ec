"""The one check on every `/v1` route: a valid key (401), the route's scope (403), the key's rate (429).

A route names the scopes that may call it in `opt={"scopes": (...)}`; any one of them grants
access, and `admin` grants all. A route without scopes is refused, so none is open by mistake.

It runs as the router's middleware rather than a Litestar guard: a guard call copies the route
handler on every request, which costs a measurable share of a recommendation (bench/serve.py).
The route is already known here (`scope["route_handler"]`). A request that the serving fast
path checked already carries its outcome (`hand_over`), so it is checked and counted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from service.context import Context
from service.errors import Forbidden, RateLimited, Unauthorized
from service.security.keys import ApiKey
from service.security.scopes import grants

_CHECKED = "shopcast.key_checked"


@dataclass(frozen=True)
class _Checked:
    scopes: tuple[str, ...]
    key: ApiKey | None
    error: Exception | None


def required_scopes(handler: BaseRouteHandler) -> tuple[str, ...]:
    return tuple(handler.opt.get("scopes", ()))


def require_key(app: ASGIApp) -> ASGIApp:
    """Middleware: authenticate the key, check the route's scope and the key's rate, then call `app`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            handler: Any = scope["route_handler"]
            scopes = required_scopes(handler)
            state = scope.setdefault("state", {})
            checked: _Checked | None = state.pop(_CHECKED, None)
            if checked is None or checked.scopes != scopes:
                key = await authorize(scope["litestar_app"].state.ctx, scope, scopes)
            elif checked.error is not None:
                raise checked.error
            else:
                assert checked.key is not None
                key = checked.key
            state["api_key"] = key
        await app(scope, receive, send)

    return middleware


def hand_over(scope: Scope, scopes: tuple[str, ...], key: ApiKey | None, error: Exception | None) -> None:
    """Leave the outcome of `authorize` for `scopes` to the middleware (which raises `error`)."""
    scope.setdefault("state", {})[_CHECKED] = _Checked(scopes, key, error)


async def authorize(ctx: Context, scope: Scope, scopes: tuple[str, ...]) -> ApiKey:
    """The key of the request if it may call a route needing `scopes` now (counted once)."""
    header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, secret = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key = await ctx.keys.verify(secret.strip())
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    if not scopes or not grants(key.scopes, scopes):
        raise Forbidden(f"this key lacks the scope for this route: needs {' or '.join(scopes) or 'admin'}")
    await _limit(ctx, key)
    await ctx.keys.touch(key)
    return key


async def _limit(ctx: Context, key: ApiKey) -> None:
    limit = key.rate_limit_per_minute or ctx.settings.api.rate_limit_per_minute
    if limit <= 0:
        return
    verdict = await ctx.limiter.hit(f"key:{key.id}", limit)
    if not verdict.allowed:
        raise RateLimited(f"rate limit of {limit} requests a minute reached", verdict.retry_after)
