"""Per-key request limits in fixed one-minute windows, counted in process and shared through Redis.

A Redis round trip on every request would cost more than serving a recommendation, so each
process counts its own hits and folds them into the shared Redis count (one pipelined INCRBY +
EXPIRE) at most every `SYNC_SECONDS` per key, and on every hit once the key has used half its
limit. Far from the limit a burst spread over many processes can overshoot by what they served
within one sync interval; close to it every hit is counted in Redis, so the limit holds exactly.
Without Redis, or while it is down, the process goes on counting on its own: limits still hold
per process and no request fails because Redis did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.redis_link import RedisLink, RedisUnavailable

WINDOW_SECONDS = 60
SYNC_SECONDS = 0.5


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


@dataclass
class _Tally:
    """One subject's count in one window: the shared total last seen plus hits not yet shared."""

    window: int
    shared: int = 0
    pending: int = 0
    sending: int = 0
    synced_at: float = float("-inf")

    @property
    def count(self) -> int:
        return self.shared + self.sending + self.pending


class RateLimiter:
    def __init__(self, redis: RedisLink, prefix: str = "shopcast:ratelimit") -> None:
        self._redis = redis
        self._prefix = prefix
        self._tallies: dict[str, _Tally] = {}

    async def hit(self, subject: str, limit: int) -> Verdict:
        """Count one request by `subject` against `limit` per minute."""
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now))
        tally = self._tally(subject, window)
        tally.pending += 1
        clock = time.monotonic()
        if self._redis.configured and (clock - tally.synced_at >= SYNC_SECONDS or 2 * tally.count >= limit):
            await self._share(subject, tally, clock)
        count = tally.count
        return Verdict(count <= limit, limit, max(0, limit - count), retry_after)

    def _tally(self, subject: str, window: int) -> _Tally:
        tally = self._tallies.get(subject)
        if tally is None or tally.window != window:
            if len(self._tallies) > 100_000:
                self._tallies = {k: t for k, t in self._tallies.items() if t.window == window}
            tally = self._tallies[subject] = _Tally(window)
        return tally

    async def _share(self, subject: str, tally: _Tally, clock: float) -> None:
        pending, key = tally.pending, f"{self._prefix}:{subject}:{tally.window}"
        tally.pending, tally.sending = 0, tally.sending + pending  # concurrent hits never add them twice

        async def add(client: object) -> int:
            async with client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
                pipe.incrby(key, pending)
                pipe.expire(key, WINDOW_SECONDS * 2)
                total, _ = await pipe.execute()
            return int(total)

        try:
            total = await self._redis.run(add)
        except RedisUnavailable:
            tally.pending += pending  # keep counting here; shared once Redis is back
            return
        finally:
            tally.sending -= pending
        tally.shared = max(tally.shared, total)
        tally.synced_at = clock
