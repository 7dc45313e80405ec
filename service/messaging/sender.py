"""Delivering claimed rows: send through the channel, then record what happened.

Retries back off exponentially with jitter (half the delay fixed, half random), and wait at
least as long as the provider's `Retry-After`, which also pauses the whole channel. A row that
keeps failing transiently is failed after its `max_attempts`. `Unknown` is final unless the
channel dedupes on the delivery key. `run_once` is one worker step: recover rows left by dead
workers, claim a batch, deliver it with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from service.messaging.channels import Channel, Envelope, Failed, Outcome, Retry, Sent, Unknown
from service.messaging.deliveries import Attempt, Delivery, DeliveryStore, now
from service.messaging.throttle import Throttle
from service.settings import MessagingSettings

log = logging.getLogger(__name__)
StaleTokens = Callable[[str, tuple[str, ...]], Awaitable[None]]
# Turns claimed rows into sendable ones (campaign messages are rendered at claim); rows it
# cannot send come back as attempts to record (skipped, with the reason).
Preparer = Callable[[list[Delivery]], Awaitable[tuple[list[Delivery], list[Attempt]]]]
AfterBatch = Callable[[list[Attempt]], Awaitable[None]]


def backoff(attempt: int, base: float, cap: float, after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential with jitter, never under `after`."""
    delay = float(min(cap, base * 2 ** max(0, attempt - 1)))
    delay = delay / 2 + random.uniform(0, delay / 2)
    return max(delay, after + random.uniform(0, 1) if after is not None else 0.0)


class Sender:
    def __init__(
        self,
        store: DeliveryStore,
        channels: dict[str, Channel],
        settings: MessagingSettings,
        *,
        on_stale_tokens: StaleTokens | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.settings = settings
        self.throttle = Throttle(settings.rates)
        self.on_stale_tokens = on_stale_tokens
        self.prepare: Preparer | None = None
        self.after_batch: AfterBatch | None = None
        self.on_bounce: Callable[[str], Awaitable[None]] | None = None  # suppress the address

    async def deliver(self, d: Delivery) -> str:
        """Send one claimed row and record the result at once; returns its new status."""
        result = await self.attempt(d)
        await self._store([result])
        return result.status

    async def attempt(self, d: Delivery) -> Attempt:
        """Send one claimed row; what to record (not yet recorded)."""
        channel = self.channels.get(d.channel)
        if channel is None:
            outcome: Outcome = Failed(f"channel {d.channel!r} is not configured")
        else:
            await self.throttle.take(d.channel)
            try:
                outcome = await channel.send(_envelope(d))
            except Exception as exc:  # a bug or an unexpected library error: keep the row, say what
                log.exception("channel %s raised while sending delivery %s", d.channel, d.id)
                outcome = Unknown(f"the {d.channel} channel raised {type(exc).__name__}")
        return await self._verdict(d, channel, outcome)

    async def _verdict(self, d: Delivery, channel: Channel | None, outcome: Outcome) -> Attempt:
        stale = getattr(outcome, "stale_tokens", ())
        if stale and d.user_id and self.on_stale_tokens is not None:
            await self.on_stale_tokens(d.user_id, stale)
        if isinstance(outcome, Failed) and outcome.bounced and self.on_bounce is not None:
            address = d.payload.get("to")
            if isinstance(address, str) and address:
                await self.on_bounce(address)
        if isinstance(outcome, Unknown) and channel is not None and channel.resend_safe:
            outcome = Retry(outcome.reason)
        if isinstance(outcome, Sent):
            status, error, retry_at = "sent", None, None
        elif isinstance(outcome, Retry):
            if outcome.after:
                self.throttle.pause(d.channel, outcome.after)
            if d.attempts >= d.max_attempts:
                status, error, retry_at = (
                    "failed",
                    f"gave up after {d.attempts} attempts: {outcome.reason}",
                    None,
                )
            else:
                wait = backoff(
                    d.attempts,
                    self.settings.backoff_seconds,
                    self.settings.max_backoff_seconds,
                    outcome.after,
                )
                status, error, retry_at = "pending", outcome.reason, now() + timedelta(seconds=wait)
        elif isinstance(outcome, Unknown):
            status, error, retry_at = "unknown", outcome.reason, None
        else:
            status, error, retry_at = "failed", outcome.reason, None
        provider_id = outcome.provider_id if isinstance(outcome, Sent) else None
        return Attempt(d, status, error, provider_id, retry_at)

    async def _store(self, results: list[Attempt]) -> None:
        stored = await self.store.record_many(results)
        if stored < len(results):
            log.warning(
                "%d outcomes arrived after their rows were recovered by another worker", len(results) - stored
            )

    async def deliver_many(self, batch: list[Delivery]) -> dict[str, int]:
        """Send a claimed batch with bounded concurrency; outcomes written in one transaction.

        `run_once` claims at most `concurrency` rows at a time, so a worker killed mid-batch
        leaves at most its concurrency of rows `sending`: those are recovered as `unknown`
        (they may have gone out), never resent.
        """
        results: list[Attempt] = []
        if self.prepare is not None:
            try:
                batch, results = await self.prepare(batch)
            except Exception as exc:  # nothing was sent: give the rows back rather than lose them
                log.warning("preparing a batch failed (%s); its rows go back to pending", type(exc).__name__)
                retry_at = now() + timedelta(seconds=self.settings.backoff_seconds)
                await self._store(
                    [
                        Attempt(d, "pending", f"not prepared: {type(exc).__name__}", None, retry_at)
                        for d in batch
                    ]
                )
                return {"pending": len(batch)}
        slots = asyncio.Semaphore(max(1, self.settings.concurrency))

        async def one(d: Delivery) -> Attempt:
            async with slots:
                return await self.attempt(d)

        results += await asyncio.gather(*(one(d) for d in batch))
        await self._store(results)
        if self.after_batch is not None:
            await self.after_batch(results)
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    async def recover(self) -> None:
        """Rows whose claim expired were in flight when a worker died: unknown (or pending again)."""
        resend_safe = {name for name, c in self.channels.items() if c.resend_safe}
        recovered = await self.store.recover(resend_safe)
        if recovered.get("unknown"):
            log.warning(
                "%d deliveries were in flight when their worker stopped: marked unknown", recovered["unknown"]
            )

    async def run_once(self, worker: str, batch_size: int | None = None) -> dict[str, int]:
        """Recover, claim and deliver one batch (default: `concurrency` rows); the outcome counts."""
        await self.recover()
        size = batch_size or max(1, self.settings.concurrency)
        batch = await self.store.claim(worker, size, self.settings.claim_seconds)
        return await self.deliver_many(batch) if batch else {}

    async def run(self, worker: str, stop: asyncio.Event, idle_seconds: float = 1.0) -> None:
        """Deliver until `stop` is set; sleeps `idle_seconds` when nothing is due.

        Two batches of half the concurrency overlap, so one is rendered while the other is on
        the wire; at most `concurrency` rows are claimed at any moment, which bounds what a
        killed worker can leave `unknown`.
        """
        half = max(1, self.settings.concurrency // 2)
        every = max(0.5, min(5.0, self.settings.claim_seconds / 4))
        going: set[asyncio.Task[dict[str, int]]] = set()
        recovered_at = -math.inf
        while not stop.is_set():
            try:
                if time.monotonic() - recovered_at >= every:
                    await self.recover()
                    recovered_at = time.monotonic()
                while len(going) < 2:
                    batch = await self.store.claim(worker, half, self.settings.claim_seconds)
                    if not batch:
                        break
                    going.add(asyncio.create_task(self.deliver_many(batch)))
            except Exception as exc:  # the database may be away for a moment: wait, try again
                log.warning("delivery loop: %s; retrying", type(exc).__name__)
            if not going:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle_seconds)
                continue
            done, going = await asyncio.wait(going, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:  # rows stay claimed: recovered as unknown later
                    log.warning("delivery batch failed: %s", type(task.exception()).__name__)
        if going:
            await asyncio.gather(*going, return_exceptions=True)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


def _envelope(d: Delivery) -> Envelope:
    return Envelope(key=d.key, payload=d.payload, user_id=d.user_id)
