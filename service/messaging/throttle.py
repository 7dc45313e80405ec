"""Per-channel send rates in this process: a token bucket, and a pause when a provider says wait.

A provider's 429 with `Retry-After` holds back the whole channel, not just the one message, so
the worker stops hammering an API that already said no. Rates are per worker process: with N
workers, give each 1/N of the provider's limit (`SHOPCAST_SEND_RATES=email=50,x=0.5`).
"""

from __future__ import annotations

import asyncio
import time


class Bucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def take(self) -> None:
        async with self._lock:
            while True:
                clock = time.monotonic()
                if clock < self._paused_until:
                    await asyncio.sleep(self._paused_until - clock)
                    continue
                if self.rate <= 0:
                    return
                self._tokens = min(self.capacity, self._tokens + (clock - self._stamp) * self.rate)
                self._stamp = clock
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class Throttle:
    """One bucket per channel; channels without a configured rate are only paused, never paced."""

    def __init__(self, rates: dict[str, float]) -> None:
        self._rates = rates
        self._buckets: dict[str, Bucket] = {}

    def bucket(self, channel: str) -> Bucket:
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = Bucket(self._rates.get(channel, 0.0))
        return bucket

    async def take(self, channel: str) -> None:
        await self.bucket(channel).take()

    def pause(self, channel: str, seconds: float) -> None:
        self.bucket(channel).pause(seconds)
