"""The console's router: its pages, its static files, and how it answers refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.static_files import create_static_files_router

from service.console.routes_campaigns import CAMPAIGN_ROUTES
from service.console.routes_main import MAIN_ROUTES
from service.console.web import PREFIX, NotAllowed, SignInNeeded, not_allowed, page, to_sign_in
from service.errors import ShopcastError

STATIC = Path(__file__).parent / "static"


def _refused(request: Request[Any, Any, Any], exc: ShopcastError) -> Response[str]:
    return page(request.app.state.ctx, "error.html", status=exc.status_code, message=exc.detail)


def console_router() -> Router:
    static = create_static_files_router(
        path="/static", directories=[STATIC], include_in_schema=False, cache_control=None
    )
    return Router(
        PREFIX,
        route_handlers=[*MAIN_ROUTES, *CAMPAIGN_ROUTES, static],
        exception_handlers={SignInNeeded: to_sign_in, NotAllowed: not_allowed, ShopcastError: _refused},
        include_in_schema=False,
    )
