"""Per request, once: Prometheus metrics and an access log line, labelled by route template.

One plain ASGI wrapper does both, because on the recommendation hot path each middleware layer
costs a measurable share of the request (bench/serve.py). Labels and log lines carry the route
template (`/v1/users/{user_id}/recommendations`), never the raw path, so no id reaches them.
"""

from __future__ import annotations

import functools
import logging
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

log = logging.getLogger("shopcast.access")

REQUESTS = Counter(
    "shopcast_requests_total", "HTTP requests by route template and status", ["method", "path", "status_code"]
)
DURATION = Histogram(
    "shopcast_request_duration_seconds",
    "HTTP request duration by route template",
    ["method", "path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
UNMATCHED = "<unmatched>"


def observe_requests(app: ASGIApp) -> ASGIApp:
    """Wrap `app` (a route handler's ASGI app, so the route is known) with metrics and logging."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            record(scope.get("method", ""), scope.get("path_template", UNMATCHED), status, started)

    return middleware


@functools.lru_cache(maxsize=1024)  # route templates, never raw paths: a bounded set
def _series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled series of one route and status (`labels` takes a lock and a dict look-up)."""
    return REQUESTS.labels(method, route, str(status)), DURATION.labels(method, route)


def record(method: str, route: str, status: int, started: float) -> None:
    """Count and log one request that began at `started` (`time.perf_counter()`)."""
    elapsed = time.perf_counter() - started
    if route != "/metrics":
        count, duration = _series(method, route, status)
        count.inc()
        duration.observe(elapsed)
    if log.isEnabledFor(logging.INFO):
        duration_ms = round(elapsed * 1000, 2)
        log.info(
            "request", extra={"method": method, "route": route, "status": status, "duration_ms": duration_ms}
        )
