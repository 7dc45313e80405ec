"""Per-key rate limits, in process and shared through Redis, and what happens when Redis stops."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
import redis

from service.app import create_app
from service.context import Context
from tests.conftest import make_settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

EVENT = {"user_id": "u1", "item_id": "i1", "event": "view", "timestamp": 1_700_000_000}


async def limited_key(ctx: Context, per_minute: int) -> dict[str, str]:
    new = await ctx.keys.create("limited", "events:write", rate_limit_per_minute=per_minute)
    return {"Authorization": f"Bearer {new.secret}"}


async def test_a_key_over_its_limit_gets_429_with_retry_after(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    headers = await limited_key(ctx, 3)
    statuses = [(await client.post("/v1/events", json=EVENT, headers=headers)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = await client.post("/v1/events", json=EVENT, headers=headers)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    other = await limited_key(ctx, 3)
    assert (await client.post("/v1/events", json=EVENT, headers=other)).status_code == 200


async def test_limits_are_shared_by_processes_through_redis(
    tmp_path: Path, settings: object, database_url: str, redis_url: str
) -> None:
    shared = make_settings(tmp_path, database_url, redis_url=redis_url)
    apps = [create_app(shared), create_app(shared)]
    clients = []
    for app in apps:
        app.state.ctx = Context.create(shared)
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"))
    try:
        headers = await limited_key(apps[0].state.ctx, 4)
        statuses = [
            (await clients[n % 2].post("/v1/events", json=EVENT, headers=headers)).status_code
            for n in range(5)
        ]
        assert statuses == [200, 200, 200, 200, 429]
        counted = redis.Redis.from_url(redis_url).keys("shopcast:ratelimit:*")
        assert counted, "the count should live in Redis"
    finally:
        for client, app in zip(clients, apps, strict=True):
            await client.aclose()
            await app.state.ctx.close()


async def test_ingest_and_limits_go_on_when_redis_stops(
    tmp_path: Path, settings: object, database_url: str, private_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, server = private_redis
    configured = make_settings(tmp_path, database_url, redis_url=url)
    app = create_app(configured)
    app.state.ctx = Context.create(configured)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        try:
            headers = await limited_key(app.state.ctx, 1_000)
            assert (await client.post("/v1/events", json=EVENT, headers=headers)).status_code == 200
            assert redis.Redis.from_url(url).keys("shopcast:ratelimit:*")
            ready = await client.get("/health/ready")
            assert ready.json()["redis"] == "ok"

            server.kill()
            server.wait()

            for n in range(5):
                event = {**EVENT, "event_id": f"after-{n}"}
                response = await client.post("/v1/events", json=event, headers=headers)
                assert response.status_code == 200, response.text
            ready = await client.get("/health/ready")
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "degraded",
                "database": "ok",
                "redis": "unavailable",
                "model": "none: popular items answer",
            }
            tight = await limited_key(app.state.ctx, 2)
            statuses = [
                (await client.post("/v1/events", json=EVENT, headers=tight)).status_code for _ in range(3)
            ]
            assert statuses == [200, 200, 429], "limits fall back to in-process counting"
        finally:
            await app.state.ctx.close()


async def test_far_from_the_limit_hits_reach_redis_in_batches(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.redis_link import RedisLink
    from service.security import ratelimit
    from service.settings import RedisSettings

    link = RedisLink(RedisSettings(url=redis_url))
    limiter = ratelimit.RateLimiter(link, prefix="shopcast:test-batches")
    shared = redis.Redis.from_url(redis_url)
    try:
        verdicts = [await limiter.hit("k", 1_000) for _ in range(100)]
        assert all(v.allowed for v in verdicts)
        assert verdicts[-1].remaining == 900, "the process counts every hit itself"
        (key,) = shared.keys("shopcast:test-batches:k:*")
        assert int(shared.get(key) or 0) < 100, "not one round trip per hit"
        monkeypatch.setattr(ratelimit, "SYNC_SECONDS", 0.0)
        await limiter.hit("k", 1_000)
        assert int(shared.get(key) or 0) == 101, "the next sync shares every hit"
    finally:
        shared.delete(*shared.keys("shopcast:test-batches:*"))
        await link.close()
