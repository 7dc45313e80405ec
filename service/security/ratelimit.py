"""Per-key request limits in fixed one-minute windows.

With Redis the count is shared by every process and machine (one pipelined INCR + EXPIRE);
without it, or while it is down, each process counts on its own, so limits still hold per
process and no request fails because Redis did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.redis_link import RedisLink, RedisUnavailable

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


class RateLimiter:
    def __init__(self, redis: RedisLink, prefix: str = "shopcast:ratelimit") -> None:
        self._redis = redis
        self._prefix = prefix
        self._local: dict[tuple[str, int], int] = {}

    async def hit(self, subject: str, limit: int) -> Verdict:
        """Count one request by `subject` against `limit` per minute."""
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now))
        try:
            count = await self._redis.run(lambda r: self._incr_shared(r, subject, window))
        except RedisUnavailable:
            count = self._incr_local(subject, window)
        return Verdict(count <= limit, limit, max(0, limit - count), retry_after)

    async def _incr_shared(self, client: object, subject: str, window: int) -> int:
        key = f"{self._prefix}:{subject}:{window}"
        async with client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS * 2)
            count, _ = await pipe.execute()
        return int(count)

    def _incr_local(self, subject: str, window: int) -> int:
        if len(self._local) > 100_000:
            self._local = {k: v for k, v in self._local.items() if k[1] == window}
        key = (subject, window)
        self._local[key] = self._local.get(key, 0) + 1
        return self._local[key]
