"""One serving process's view of the world: the served model and the live data around it.

Requests read `ServingState` without awaiting anything but the first load. Background loops
(started with the app) keep it current: the model version (polled, and at once on a Redis
notice from `publish`/`rollback`), fresh events, the catalog, staff rules and trending items.
A new model is loaded off the event loop and swapped in by one assignment, so no request sees
half of it; a model that fails to load is logged and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from sqlalchemy.ext.asyncio import AsyncEngine

from models import ArtifactError, load
from service.redis_link import RedisLink, RedisUnavailable
from service.serving.catalog_view import CatalogView
from service.serving.fresh import FreshEvents
from service.serving.model import ServingModel
from service.serving.rules import MerchRules
from service.serving.served import ServedCounter
from service.serving.trending import TrendingBoard
from service.settings import ServingSettings
from training.dataset import DEFAULT_EVENT_WEIGHTS
from training.registry import ModelRegistry

log = logging.getLogger(__name__)
MODEL_CHANNEL = "shopcast:models"


class ServingState:
    def __init__(
        self, engine: AsyncEngine, redis: RedisLink, models_dir: Path, settings: ServingSettings
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.registry = ModelRegistry(engine, models_dir)
        self.settings = settings
        self.model: ServingModel | None = None
        self.model_error: str | None = None
        self.catalog = CatalogView()
        self.fresh = FreshEvents()
        self.rules = MerchRules()
        self.trending = TrendingBoard()
        self._ready = False
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.served = ServedCounter()
        self.rank_pending: Callable[[], Awaitable[int]] | None = None  # set by Answers

    @property
    def event_weights(self) -> dict[str, float]:
        return self.model.event_weights if self.model else dict(DEFAULT_EVENT_WEIGHTS)

    async def ensure_ready(self) -> None:
        """Load everything once (the first request waits for it; later ones do not)."""
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                await self.refresh()
                self._ready = True
                settle_memory()

    async def refresh(self) -> None:
        """Bring every part up to date now (start-up, tests)."""
        await self.check_model()
        await self.catalog.refresh(self.engine)
        await self.fresh.refresh(self.engine)
        await self.rules.refresh(self.engine)
        await self.trending.refresh(self.engine, self.event_weights)

    async def after_events(self) -> None:
        """This process stored events: its next answers reflect them at once (others poll)."""
        if self._ready:
            await self._quietly(self.fresh.refresh(self.engine), "fresh events")

    async def after_catalog_change(self) -> None:
        if self._ready:
            await self._quietly(self.catalog.refresh(self.engine), "catalog")

    async def _quietly(self, step: Awaitable[object], what: str) -> None:
        """The write succeeded; a failed refresh only delays what serving sees until the next poll."""
        try:
            await step
        except Exception as exc:
            log.warning("refreshing %s after a write failed: %s", what, type(exc).__name__)

    def describe_model(self) -> str:
        if self.model is None:
            return self.model_error or "none: popular items answer"
        return self.model.version + (
            f" (newer version failed: {self.model_error})" if self.model_error else ""
        )

    async def check_model(self) -> bool:
        """Swap in the current published version if it is not the one served; True when swapped."""
        current = await self.registry.current()
        if current is None or (self.model is not None and self.model.version == current.version):
            return False
        path = self.registry.path(current.version)
        try:
            model = await asyncio.to_thread(_load_model, current.version, path)
        except (ArtifactError, OSError, ValueError) as exc:
            self.model_error = f"version {current.version} cannot be loaded: {exc}"
            log.error("model swap failed, still serving %s: %s", self.version, self.model_error)
            return False
        self.fresh.reset(after=model.window_end)
        self.model, self.model_error = model, None
        await self.fresh.refresh(self.engine)
        settle_memory()
        log.info("serving model version %s", model.version)
        return True

    @property
    def version(self) -> str | None:
        return self.model.version if self.model else None

    async def notify_model_change(self, version: str) -> None:
        """Tell every serving process (through Redis, when there is one) to look for a new model."""
        with contextlib.suppress(RedisUnavailable):
            await self.redis.run(lambda client: client.publish(MODEL_CHANNEL, version))

    def start(self) -> None:
        """Start the background loops (one set per process)."""
        every = self.settings
        self._tasks = [
            asyncio.create_task(self._every(every.model_poll_seconds, self.check_model, "model")),
            asyncio.create_task(self._every(every.fresh_poll_seconds, self._fresh, "fresh events")),
            asyncio.create_task(self._every(every.catalog_poll_seconds, self._catalog, "catalog")),
            asyncio.create_task(self._every(every.rules_poll_seconds, self._rules, "rules")),
            asyncio.create_task(self._every(every.trending_refresh_seconds, self._trending, "trending")),
            asyncio.create_task(self._listen_for_models()),
            asyncio.create_task(self._every(0.1, self._rank_fresh, "fresh rankings")),
            asyncio.create_task(self._every(every.served_flush_seconds, self._flush_served, "served counts")),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.served.flush(self.engine)

    async def _fresh(self) -> None:
        await self.fresh.refresh(self.engine)

    async def _rank_fresh(self) -> None:
        """Rank users with fresh events in batches until none is waiting."""
        while self.rank_pending is not None and await self.rank_pending():
            pass

    async def _flush_served(self) -> None:
        await self.served.flush(self.engine)

    async def _catalog(self) -> None:
        await self.catalog.refresh(self.engine)

    async def _rules(self) -> None:
        await self.rules.refresh(self.engine)

    async def _trending(self) -> None:
        await self.trending.refresh(self.engine, self.event_weights)

    async def _every(self, seconds: float, step: Callable[[], Awaitable[object]], what: str) -> None:
        failing = False
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving what we have; say so once per outage
                if not failing:
                    log.warning("refreshing %s failed, serving what is loaded: %s", what, type(exc).__name__)
                failing = True

    async def _listen_for_models(self) -> None:
        """React to model-swap notices at once; without Redis, polling alone notices them."""
        while True:
            try:
                pubsub = await self.redis.run(_subscribe)
            except RedisUnavailable:
                await asyncio.sleep(self.settings.model_poll_seconds)
                continue
            try:
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        await self.check_model()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("model notices from redis stopped (%s); polling continues", type(exc).__name__)
                await asyncio.sleep(self.settings.model_poll_seconds)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]


def settle_memory() -> None:
    """Move what is loaded now (id maps, catalog: millions of objects) out of the collector's way.

    A full collection would otherwise walk them all, a pause of tens of milliseconds in the
    middle of requests. Frozen objects are still freed by reference counting when dropped (a
    swapped-out model); only reference cycles among them wait for the next unfreeze.
    """
    gc.collect()
    gc.freeze()


async def _subscribe(client: Redis) -> PubSub:
    pubsub = client.pubsub()
    await pubsub.subscribe(MODEL_CHANNEL)
    return pubsub


def _load_model(version: str, path: Path) -> ServingModel:
    started = time.perf_counter()
    model = ServingModel(version, load(path))
    log.info("loaded model %s in %.2fs", version, time.perf_counter() - started)
    return model
