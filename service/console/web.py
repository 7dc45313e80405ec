"""What every console page shares: rendering, the signed-in check, CSRF and roles.

Pages are the console's own Jinja2 templates (`templates/console/`, trusted, autoescaped).
Staff-written message templates never render here: previews come from messaging's sandbox
and are shown in a sandboxed iframe.

Every POST carries the session's CSRF token, as the form field `csrf_token` or the
`X-CSRF-Token` header (htmx sends it from the page's `hx-headers`); the sign-in form, which
has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hmac
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.params import PathParameter
from litestar.response import Redirect

from service.console import charts
from service.console.staff import Session
from service.context import Context
from service.messaging.templates import default_templates_dir

RowId = Annotated[int, PathParameter(ge=1, le=2**62)]
PathText = Annotated[str, PathParameter(min_length=1, max_length=200)]
COOKIE = "shopcast_console"
LOGIN_COOKIE = "shopcast_console_login"
PREFIX = "/console"
NONE = "\N{EN DASH}"  # what a table shows for a figure there is nothing to compute from
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    # previews show staff-written HTML in a sandboxed iframe (srcdoc inherits this policy)
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: http: https:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'",
}


class SignInNeeded(Exception):
    """No live session: off to the sign-in page, saying why."""

    def __init__(self, why: str, back_to: str = PREFIX) -> None:
        super().__init__(why)
        self.why = why
        self.back_to = back_to


class NotAllowed(Exception):
    """Signed in, but the role or the request does not allow this (a 403 page that says why)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@cache
def _environment(root: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(root / "console"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(bars=charts.bars, prefix=PREFIX)
    env.filters["pct"] = lambda v, digits=1: NONE if v is None else f"{100 * v:.{digits}f}%"
    env.filters["money"] = lambda v: NONE if v is None else f"{v:,.2f}"
    env.filters["change"] = lambda v: NONE if v is None else f"{100 * v:+.0f}%"
    return env


def render_text(ctx: Context, template: str, /, **values: Any) -> str:
    root = ctx.settings.messaging.templates_dir or default_templates_dir()
    return _environment(root).get_template(template).render(**values)


def page(
    ctx: Context, template: str, session: Session | None = None, /, *, status: int = 200, **values: Any
) -> Response[str]:
    """A whole page (or an htmx fragment, for templates whose name starts with `_`)."""
    html = render_text(ctx, template, me=session.staff if session else None,
                       csrf=session.csrf_token if session else "", **values)  # fmt: skip
    return Response(html, status_code=status, media_type=MediaType.HTML, headers=NO_STORE)


def session_cookie(token: str, secure: bool, max_age: int | None) -> Cookie:
    return Cookie(key=COOKIE, value=token, path=PREFIX, httponly=True, secure=secure, samesite="strict",
                  max_age=max_age)  # fmt: skip


async def signed_in(request: Request[Any, Any, Any], ctx: Context, role: str = "viewer") -> Session:
    """The live session, with at least `role`; POSTs must carry its CSRF token."""
    token = request.cookies.get(COOKIE)
    session = await ctx.staff.session(token) if token else None
    if session is None:
        raise SignInNeeded("expired" if token else "signed_out", back_to=str(request.url.path))
    if request.method != "GET":
        await check_csrf(request, session.csrf_token)
    if not session.staff.may(role):
        raise NotAllowed(f"Your role ({session.staff.role}) cannot do this: it needs {role} or above.")
    return session


async def check_csrf(request: Request[Any, Any, Any], expected: str) -> None:
    sent = request.headers.get("x-csrf-token") or (await request.form()).get("csrf_token") or ""
    if not expected or not hmac.compare_digest(str(sent), expected):
        raise NotAllowed(
            "This form is missing its security token (CSRF) or it has expired. Reload the page and try again."
        )


def to_sign_in(request: Request[Any, Any, Any], exc: SignInNeeded) -> Response[Any]:
    target = f"{PREFIX}/login?why={exc.why}&next={quote(exc.back_to)}"
    if request.headers.get("hx-request"):  # htmx: have the browser go there, not swap it in
        return Response("", status_code=401, headers={"HX-Redirect": target, **NO_STORE})
    response: Response[Any] = Redirect(target, status_code=303)
    if exc.why == "expired":
        response.delete_cookie(COOKIE, path=PREFIX)
    return response


def not_allowed(request: Request[Any, Any, Any], exc: NotAllowed) -> Response[str]:
    ctx: Context = request.app.state.ctx
    if request.headers.get("hx-request"):
        return page(ctx, "_message.html", status=exc.status, kind="error", message=exc.message)
    return page(ctx, "error.html", status=exc.status, message=exc.message)
