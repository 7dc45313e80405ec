"""Every /v1 route, found in the app's route table, refuses missing, unknown, revoked and unscoped keys."""

from __future__ import annotations

import re

import httpx
import pytest

from service.app import create_app
from service.context import Context
from service.security.scopes import SCOPES
from service.settings import load_settings


def v1_operations() -> list[tuple[str, str, tuple[str, ...]]]:
    app = create_app(load_settings({"SHOPCAST_SECRET_KEY": "x"}))
    found = []
    for route in app.routes:
        if not route.path.startswith("/v1"):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"HEAD", "OPTIONS"}):
                path = re.sub(r"\{[^}]+\}", "some-id", re.sub(r"\{[^}]+:int\}", "1", route.path))
                found.append((method, path, tuple(handler.opt.get("scopes", ()))))
    return found


OPERATIONS = v1_operations()
IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]


def test_the_route_table_has_the_api() -> None:
    paths = {path for _, path, _ in OPERATIONS}
    assert {"/v1/events", "/v1/events/bulk", "/v1/items", "/v1/users/some-id/export"} <= paths


@pytest.mark.parametrize(("method", "path", "scopes"), OPERATIONS, ids=IDS)
def test_every_route_names_known_scopes(method: str, path: str, scopes: tuple[str, ...]) -> None:
    assert scopes, f"{method} {path} declares no scope"
    assert set(scopes) <= set(SCOPES)


@pytest.mark.parametrize(("method", "path", "scopes"), OPERATIONS, ids=IDS)
async def test_every_route_checks_the_key(
    client: httpx.AsyncClient, ctx: Context, method: str, path: str, scopes: tuple[str, ...]
) -> None:
    async def call(headers: dict[str, str]) -> httpx.Response:
        return await client.request(method, path, headers=headers, params={"email": "a@b.test"})

    missing = await call({})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert (await call({"Authorization": "Basic dXNlcjpwYXNz"})).status_code == 401
    assert (await call({"Authorization": "Bearer sck_not-a-real-key"})).status_code == 401

    revoked = await ctx.keys.create("revoked", list(scopes))
    await ctx.keys.revoke(revoked.key.id)
    assert (await call({"Authorization": f"Bearer {revoked.secret}"})).status_code == 401

    other = next(s for s in SCOPES if s not in scopes and s != "admin")
    wrong = await ctx.keys.create("wrong scope", other)
    refused = await call({"Authorization": f"Bearer {wrong.secret}"})
    assert refused.status_code == 403
    assert scopes[0] in refused.json()["detail"]

    for granted in (scopes[0], "admin"):
        right = await ctx.keys.create("right scope", granted)
        answered = await call({"Authorization": f"Bearer {right.secret}"})
        assert answered.status_code not in (401, 403), answered.text


async def test_key_use_is_recorded(client: httpx.AsyncClient, ctx: Context) -> None:
    new = await ctx.keys.create("reader", "catalog:write")
    await client.get("/v1/items/x", headers={"Authorization": f"Bearer {new.secret}"})
    [listed] = [k for k in await ctx.keys.list() if k.id == new.key.id]
    assert listed.last_used_at is not None
    assert new.secret not in repr(listed)


async def test_secrets_are_stored_only_as_hashes(client: httpx.AsyncClient, ctx: Context) -> None:
    from sqlalchemy import text

    new = await ctx.keys.create("hashed", "admin")
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_keys"))).all()
    assert rows
    assert all(new.secret not in str(tuple(row)) for row in rows)


async def test_unknown_scope_is_refused_at_creation(client: httpx.AsyncClient, ctx: Context) -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        await ctx.keys.create("bad", "events:write,everything")


async def test_an_expired_cached_key_is_read_again_by_one_request_while_the_others_go_on(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from service.security.keys import KeyStore

    store = KeyStore(ctx.engine, cache_seconds=0.0)  # every cached key has expired at once
    new = await store.create("busy", "recs:read")
    assert await store.verify(new.secret) == new.key
    reads = 0
    original = store._read

    async def slow_read(digest: str):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)
        return await original(digest)

    monkeypatch.setattr(store, "_read", slow_read)
    found = await asyncio.gather(*(store.verify(new.secret) for _ in range(20)))
    assert found == [new.key] * 20
    assert reads == 1, "one request reads the key; the other 19 use the cached one meanwhile"
    await store.revoke(new.key.id)
    assert await store.verify(new.secret) is None, "revoking clears the cache: refused at once"
