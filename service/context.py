"""The process-wide parts every request and command shares, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from service.campaigns.service import Campaigns
from service.console.staff import StaffStore
from service.messaging.service import Messaging
from service.redis_link import RedisLink
from service.security.crypto import PersonalDataCipher
from service.security.keys import KeyStore
from service.security.ratelimit import RateLimiter
from service.serving.answers import Answers
from service.serving.state import ServingState
from service.settings import Settings
from service.storage.engine import create_engine


@dataclass
class Context:
    settings: Settings
    engine: AsyncEngine
    cipher: PersonalDataCipher
    redis: RedisLink
    keys: KeyStore
    limiter: RateLimiter
    serving: ServingState
    answers: Answers
    messaging: Messaging
    campaigns: Campaigns
    staff: StaffStore

    @classmethod
    def create(cls, settings: Settings) -> Context:
        engine = create_engine(settings.database)
        redis = RedisLink(settings.redis)
        serving = ServingState(engine, redis, settings.data_dir / "models", settings.serving)
        cipher = PersonalDataCipher(settings.resolved_secret_key())
        answers = Answers(serving)
        messaging = Messaging(settings, engine, cipher, answers)
        campaigns = Campaigns(settings, engine, cipher, messaging, serving)
        campaigns.attach()
        return cls(
            settings=settings,
            engine=engine,
            cipher=cipher,
            redis=redis,
            keys=KeyStore(engine, cache_seconds=settings.api.key_cache_seconds),
            limiter=RateLimiter(redis),
            serving=serving,
            answers=answers,
            messaging=messaging,
            campaigns=campaigns,
            staff=StaffStore(engine),
        )

    async def close(self) -> None:
        await self.messaging.close()
        await self.serving.stop()
        await self.redis.close()
        await self.engine.dispose()


Ctx = NamedDependency[Context]
"""How a route handler asks for the context: `ctx: Ctx`."""
