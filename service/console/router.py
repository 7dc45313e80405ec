"""The console's router: its pages, its static files, and how it answers refusals."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.static_files import create_static_files_router

from service.console.routes_campaigns import CAMPAIGN_ROUTES
from service.console.routes_main import MAIN_ROUTES
from service.console.web import PREFIX, NotAllowed, SignInNeeded, not_allowed, page, to_sign_in
from service.errors import DATABASE_ERRORS, ShopcastError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def _refused(request: Request[Any, Any, Any], exc: ShopcastError) -> Response[str]:
    return page(request.app.state.ctx, "error.html", status=exc.status_code, message=exc.detail)


def _database_away(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    log.error("console: database error: %s", type(getattr(exc, "orig", exc)).__name__)
    message = "The database is not answering. Nothing was changed; try again in a moment."
    response = page(request.app.state.ctx, "error.html", status=503, message=message)
    response.headers["Retry-After"] = "5"
    return response


def console_router() -> Router:
    static = create_static_files_router(
        path="/static", directories=[STATIC], include_in_schema=False, cache_control=None
    )
    return Router(
        PREFIX,
        route_handlers=[*MAIN_ROUTES, *CAMPAIGN_ROUTES, static],
        exception_handlers={
            SignInNeeded: to_sign_in,
            NotAllowed: not_allowed,
            ShopcastError: _refused,
            **dict.fromkeys(DATABASE_ERRORS, _database_away),
        },
        include_in_schema=False,
    )
