"""The Litestar application: `create_app()` wires settings, routes, guard and error handling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusController

from service import __version__
from service.analytics.controllers import AnalyticsController
from service.campaigns.controllers import CAMPAIGN_CONTROLLERS
from service.catalog.controllers import ItemsController
from service.console.router import console_router
from service.context import Context
from service.errors import exception_handlers
from service.ingest.controllers import EventsController
from service.messaging.controllers import MESSAGING_CONTROLLERS
from service.ops.access_log import observe_requests
from service.ops.health import HealthController
from service.ops.logs import configure_logging
from service.security.guard import require_key
from service.serving.controllers import SERVING_CONTROLLERS
from service.serving.fast_path import serve_user_recommendations
from service.serving.rules_api import RulesController
from service.settings import Settings, load_settings
from service.tracking.controllers import LinksController
from service.users.controllers import UsersController

API_CONTROLLERS = [
    EventsController,
    ItemsController,
    UsersController,
    RulesController,
    *SERVING_CONTROLLERS,
    *MESSAGING_CONTROLLERS,
    *CAMPAIGN_CONTROLLERS,
    AnalyticsController,
]


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


def provide_context(state: State) -> Context:
    ctx: Context = state.ctx
    return ctx


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.ctx = ctx = Context.create(settings)
        try:
            try:
                await ctx.serving.ensure_ready()
            except Exception as exc:  # the database may come later: requests load it then
                logging.getLogger(__name__).warning(
                    "serving state not loaded at start: %s", type(exc).__name__
                )
            ctx.serving.start()
            yield
        finally:
            await app.state.ctx.close()

    api = Router("/v1", route_handlers=API_CONTROLLERS, middleware=[require_key], security=[{"bearer": []}])
    app = Litestar(
        route_handlers=[api, console_router(), HealthController, MetricsController, LinksController],
        dependencies={"ctx": Provide(provide_context, sync_to_thread=False)},
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        middleware=[observe_requests],
        request_max_body_size=settings.api.max_body_bytes,
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="shopcast",
            version=__version__,
            description="Events, catalog and users in; recommendations and campaigns out.",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
        ),
    )
    app.asgi_handler = serve_user_recommendations(app.asgi_handler)
    return app
