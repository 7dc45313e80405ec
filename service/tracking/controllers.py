"""Public, signed links (no API key): click redirects, one-click unsubscribe, preferences.

    GET  /t/click?t=…            record the click, then 302 to the item
    GET  /t/open?t=…             record the open (unreliable: proxies prefetch), a 1x1 GIF
    GET  /u/unsubscribe?t=…      a confirmation page (mail scanners open links; GET changes nothing)
    POST /u/unsubscribe?t=…      unsubscribe: RFC 8058 one-click (`List-Unsubscribe=One-Click`)
    GET  /u/preferences?t=…      consent per channel, as a form
    POST /u/preferences?t=…      save it

A forged, altered or foreign token gets 400 and a page that says so; nothing is changed.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.enums import MediaType
from litestar.params import QueryParameter
from litestar.response import Redirect

from service.context import Context, Ctx
from service.messaging.compose import PREFERENCES_PATH, UNSUBSCRIBE_PATH
from service.messaging.links import InvalidToken
from service.records.users import CONSENT_CHANNELS
from service.tracking.service import consents_of, record_click, record_message_event, set_consents

Token = Annotated[str, QueryParameter(name="t", min_length=1, max_length=4_096, description="signed token")]
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
LABELS = {
    "email": "emails",
    "push": "push notifications",
    "sms": "text messages",
    "social": "social messages",
}


def _page(ctx: Context, name: str, status: int = 200, **values: Any) -> Response[str]:
    messaging = ctx.messaging
    source = f'{{% extends "pages/{name}.html" %}}'
    context = {"shop": {"name": messaging.settings.messaging.shop_name}, "locale": "en", **values}
    html = messaging.renderer.render(name, source, context, html=True)
    return Response(
        html, status_code=status, media_type=MediaType.HTML, headers={"Cache-Control": "no-store"}
    )


def _invalid_link(request: Request[Any, Any, Any], exc: InvalidToken) -> Response[str]:
    """A forged, altered or expired link: a page that says so (people click these), status 400."""
    return _page(request.app.state.ctx, "invalid_link", status=400, reason=exc.detail)


class LinksController(Controller):
    path = "/"
    tags = ["links"]
    exception_handlers = {InvalidToken: _invalid_link}

    @get("/t/click", operation_id="followClick", status_code=302)
    async def click(self, t: Token, ctx: Ctx) -> Response[Any]:
        """Record the click for the message's recipient and item, then redirect to the item."""
        claims = ctx.messaging.signer.verify("click", t)
        target = str(claims.get("u") or ctx.settings.messaging.public_url)
        await record_click(ctx.engine, claims.get("us"), claims.get("i"), str(claims.get("k", "")))
        return Redirect(target, status_code=302)

    @get("/t/open", operation_id="recordOpen", media_type="image/gif")
    async def open_pixel(self, t: Token, ctx: Ctx) -> Response[bytes]:
        """Record that the email was displayed (or prefetched), answer a transparent pixel."""
        claims = ctx.messaging.signer.verify("open", t)
        await record_message_event(ctx.engine, "open", claims.get("us"), str(claims.get("k", "")))
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, private"})

    @get("/u/unsubscribe", operation_id="unsubscribePage")
    async def unsubscribe_page(self, t: Token, ctx: Ctx) -> Response[str]:
        claims = ctx.messaging.signer.verify("unsubscribe", t)
        channel = _consent_channel(claims)
        return _page(
            ctx, "unsubscribe", done=False, channel_label=LABELS[channel], action=f"{UNSUBSCRIBE_PATH}?t={t}"
        )

    @post("/u/unsubscribe", operation_id="unsubscribeOneClick", status_code=200)
    async def unsubscribe(self, t: Token, ctx: Ctx) -> Response[str]:
        """RFC 8058 one-click unsubscribe (mail providers POST `List-Unsubscribe=One-Click` here)."""
        claims = ctx.messaging.signer.verify("unsubscribe", t)
        channel = _consent_channel(claims)
        user_id = str(claims.get("us", ""))
        if await set_consents(ctx.engine, user_id, {channel: False}, source="unsubscribe_link"):
            await record_message_event(ctx.engine, "unsubscribe", user_id, str(claims.get("k", "")))
        preferences = ctx.messaging.signer.url(PREFERENCES_PATH, "preferences", {"us": user_id})
        return _page(
            ctx, "unsubscribe", done=True, channel_label=LABELS[channel], preferences_url=preferences
        )

    @get("/u/preferences", operation_id="preferencesPage")
    async def preferences_page(self, t: Token, ctx: Ctx) -> Response[str]:
        claims = ctx.messaging.signer.verify("preferences", t)
        current = await consents_of(ctx.engine, str(claims.get("us", "")))
        return _preferences(ctx, t, current, saved=False)

    @post("/u/preferences", operation_id="savePreferences", status_code=200)
    async def save_preferences(self, t: Token, ctx: Ctx, request: Request[Any, Any, Any]) -> Response[str]:
        """Save the form: a channel ticked is consent given, unticked is withdrawn."""
        claims = ctx.messaging.signer.verify("preferences", t)
        try:
            form = await request.form()
            ticked = {key for key in form if key in CONSENT_CHANNELS}
        except Exception:  # not a form: nothing ticked would withdraw everything, so refuse
            return _page(ctx, "invalid_link", status=400, reason="send the preferences form")
        user_id = str(claims.get("us", ""))
        wanted = {channel: channel in ticked for channel in CONSENT_CHANNELS}
        await set_consents(ctx.engine, user_id, wanted, source="preferences_page")
        return _preferences(ctx, t, await consents_of(ctx.engine, user_id), saved=True)


def _consent_channel(claims: dict[str, Any]) -> str:
    channel = str(claims.get("ch", "email"))
    return channel if channel in CONSENT_CHANNELS else "email"


def _preferences(ctx: Context, token: str, current: dict[str, bool], *, saved: bool) -> Response[str]:
    rows = [(c, LABELS[c].capitalize(), current.get(c, False)) for c in CONSENT_CHANNELS]
    return _page(ctx, "preferences", channels=rows, saved=saved, action=f"{PREFERENCES_PATH}?t={token}")
