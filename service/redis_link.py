"""A guarded Redis connection: short timeouts, and a pause after a failure.

Redis coordinates and caches; it never holds the only copy of anything. So every caller has an
in-process fallback, and `RedisLink.run` raises `RedisUnavailable` quickly instead of letting a
slow or stopped Redis hold up a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from service.settings import RedisSettings

T = TypeVar("T")
log = logging.getLogger(__name__)


class RedisUnavailable(Exception):
    """Redis is not configured, or did not answer; use the in-process fallback."""


class RedisLink:
    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._client: redis.Redis | None = None
        if settings.url:
            self._client = redis.Redis.from_url(
                settings.url,
                socket_timeout=settings.timeout_seconds,
                socket_connect_timeout=settings.timeout_seconds,
                health_check_interval=30,
            )
        self._paused_until = 0.0

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def run(self, operation: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """Run `operation` on the client, or raise RedisUnavailable."""
        if self._client is None:
            raise RedisUnavailable("redis is not configured")
        if time.monotonic() < self._paused_until:
            raise RedisUnavailable("redis failed recently")
        try:
            return await operation(self._client)
        except (RedisError, OSError, TimeoutError) as exc:
            if self._paused_until == 0.0 or time.monotonic() >= self._paused_until:
                log.warning("redis unavailable, using in-process fallback: %s", type(exc).__name__)
            self._paused_until = time.monotonic() + self._settings.retry_after_failure_seconds
            raise RedisUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self.run(lambda client: client.ping()))
        except RedisUnavailable:
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
