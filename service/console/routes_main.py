"""Console: sign-in and out, the dashboard, model versions and API keys."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import QueryParameter
from litestar.response import Redirect

from service.analytics import queries
from service.analytics.queries import PERIODS, Period
from service.console.staff import LIFETIME, Locked
from service.console.web import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    NotAllowed,
    PathText,
    RowId,
    page,
    session_cookie,
    signed_in,
)
from service.context import Ctx
from service.retraining import registry_for, roll_back
from service.security.scopes import SCOPES, parse_scopes
from training.registry import RegistryError

Query = Annotated[str | None, QueryParameter(max_length=2_000)]
WHY = {
    "expired": "Your session has expired. Sign in again.",
    "signed_out": "Sign in to continue.",
    "bye": "You are signed out.",
}


def _secure(ctx: Any) -> bool:
    return str(ctx.settings.messaging.public_url).startswith("https://")


def _safe_next(target: str | None) -> str:
    """Only a console path (no open redirect to another site)."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX


@get("/login", include_in_schema=False)
async def login_page(ctx: Ctx, why: Query = None, next: Query = None) -> Response[str]:
    token = secrets.token_urlsafe(24)
    response = page(ctx, "login.html", message=WHY.get(why or ""), next=_safe_next(next), login_csrf=token)
    response.set_cookie(
        Cookie(
            key=LOGIN_COOKIE, value=token, path=PREFIX, httponly=True, samesite="strict", secure=_secure(ctx)
        )
    )
    return response


@post("/login", include_in_schema=False, status_code=200)
async def login(request: Request[Any, Any, Any], ctx: Ctx) -> Response[Any]:
    form = await request.form()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    sent = str(form.get("csrf_token") or "")
    if not cookie or not hmac.compare_digest(cookie, sent):
        raise NotAllowed(
            "The sign-in form is missing its security token (CSRF). Reload the page and try again."
        )
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))

    def again(message: str, status: int) -> Response[str]:
        return page(
            ctx, "login.html", status=status, message=message, next=target, login_csrf=cookie, email=email
        )

    try:
        staff = await ctx.staff.sign_in(email, password)
    except Locked as locked:
        response = again(
            f"Too many failed sign-ins for this email. Wait {locked.seconds} s and try again.", status=429
        )
        response.headers["Retry-After"] = str(locked.seconds)
        return response
    if staff is None:
        return again("Wrong email or password.", status=401)
    token, _ = await ctx.staff.open_session(staff)
    signed: Response[Any] = Redirect(target, status_code=303)
    signed.set_cookie(session_cookie(token, _secure(ctx), int(LIFETIME.total_seconds())))
    signed.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return signed


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any], ctx: Ctx) -> Response[Any]:
    await signed_in(request, ctx)
    await ctx.staff.close_session(request.cookies.get(COOKIE, ""))
    response: Response[Any] = Redirect(f"{PREFIX}/login?why=bye", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def _period_name(value: str | None, default: str) -> str:
    return value if value in PERIODS else default


@get("/", include_in_schema=False)
async def dashboard(
    request: Request[Any, Any, Any], ctx: Ctx, period: Query = None, channel: Query = None
) -> Response[str]:
    session = await signed_in(request, ctx)
    name = _period_name(period, "30d")
    chosen = channel if channel in ctx.settings.api.channels else None
    window = Period.ending(name)
    item_report = await queries.item_report(ctx.engine, window, channel=chosen, limit=10)
    channel_report = await queries.channel_report(ctx.engine, window)
    campaigns = await queries.campaign_table(ctx.engine, limit=10)
    return page(
        ctx,
        "dashboard.html",
        session,
        period=name,
        periods=list(PERIODS),
        channel=chosen,
        channels=ctx.settings.api.channels,
        items=item_report,
        mix=channel_report,
        campaigns=campaigns["campaigns"],
        hot_rows=[(r["title"] or r["item_id"], r["revenue"]) for r in item_report["hot"]],
        mix_rows=[
            (r["channel"] or "(none)", 100 * (r["revenue_share"] or 0)) for r in channel_report["channels"]
        ],
        campaign_rows=[(c["name"], c["revenue"]) for c in campaigns["campaigns"]],
    )


@get("/models", include_in_schema=False)
async def models_page(request: Request[Any, Any, Any], ctx: Ctx, message: Query = None) -> Response[str]:
    return await _models(ctx, await signed_in(request, ctx), message)


async def _models(ctx: Any, session: Any, message: str | None) -> Response[str]:
    report = await queries.model_report(ctx.engine, registry_for(ctx), Period.ending("30d"))
    quality = [
        (v["version"], v["offline"]["novel"]["ndcg@10"])
        for v in report["versions"]
        if "ndcg@10" in v["offline"].get("novel", {})
    ]
    return page(ctx, "models.html", session, report=report, message=message, quality_rows=quality)


@post("/models/{version:str}/rollback", include_in_schema=False, status_code=200)
async def rollback(request: Request[Any, Any, Any], ctx: Ctx, version: PathText) -> Response[str]:
    session = await signed_in(request, ctx, "admin")
    try:
        current = await roll_back(ctx, version)
        message = f"Version {current.version} is served again."
    except RegistryError as exc:
        message = f"Not rolled back: {exc}"
    return await _models(ctx, session, message)


@get("/keys", include_in_schema=False)
async def keys_page(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx, "admin")
    return page(
        ctx, "keys.html", session, keys=await ctx.keys.list(), scopes=SCOPES, created=None, error=None
    )


@post("/keys", include_in_schema=False, status_code=200)
async def create_key(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx, "admin")
    form = await request.form()
    created, error = None, None
    try:
        created = await ctx.keys.create(
            str(form.get("name") or ""), list(parse_scopes(form.getall("scopes", [])))
        )
    except ValueError as exc:
        error = str(exc)
    keys = await ctx.keys.list()
    return page(ctx, "keys.html", session, keys=keys, scopes=SCOPES, created=created, error=error,
                status=200 if error is None else 422)  # fmt: skip


@post("/keys/{key_id:int}/revoke", include_in_schema=False, status_code=200)
async def revoke_key(request: Request[Any, Any, Any], ctx: Ctx, key_id: RowId) -> Response[str]:
    session = await signed_in(request, ctx, "admin")
    await ctx.keys.revoke(key_id)
    return page(
        ctx, "keys.html", session, keys=await ctx.keys.list(), scopes=SCOPES, created=None, error=None
    )


MAIN_ROUTES = [login_page, login, logout, dashboard, models_page, rollback, keys_page, create_key, revoke_key]
