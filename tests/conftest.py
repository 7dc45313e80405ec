"""Shared fixtures: real SQLite and PostgreSQL databases, real Redis, the app and its client.

Storage tests run on both databases (`database_url` is parametrized). PostgreSQL and Redis are
expected at 127.0.0.1 (override with SHOPCAST_TEST_POSTGRES_URL / SHOPCAST_TEST_REDIS_URL);
without them those tests skip with the reason, unless SHOPCAST_REQUIRE_SERVICES=1 (CI), where
they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
from litestar import Litestar
from sqlalchemy import delete

from service.app import create_app
from service.context import Context
from service.settings import Settings, load_settings
from service.storage.engine import create_engine
from service.storage.migrate import upgrade
from service.storage.tables import metadata
from tests.fakes import FakeProviders, FakeSmtp

REQUIRE_SERVICES = os.environ.get("SHOPCAST_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "SHOPCAST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SHOPCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "test-secret-key-not-for-production"


def unavailable(what: str, why: object) -> None:
    message = f"{what} is not reachable ({why}); start it or set SHOPCAST_TEST_* URLs"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (SHOPCAST_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'shopcast.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"shopcast_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable("PostgreSQL", exc)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def empty_tables(url: str) -> None:
    engine = create_engine(load_settings({"SHOPCAST_DATABASE_URL": url}).database)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(delete(table))
    finally:
        await engine.dispose()


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    finally:
        client.close()
    return REDIS_URL


def make_settings(tmp_path: Path, database_url: str, **extra: str) -> Settings:
    env = {
        "SHOPCAST_DATABASE_URL": database_url,
        "SHOPCAST_DATA_DIR": str(tmp_path / "var"),
        "SHOPCAST_SECRET_KEY": SECRET,
        "SHOPCAST_KEY_CACHE_SECONDS": "0",
        **{f"SHOPCAST_{k.upper()}": v for k, v in extra.items()},
    }
    return load_settings(env)


@pytest.fixture
async def settings(tmp_path: Path, database_url: str) -> Settings:
    await empty_tables(database_url)
    return make_settings(tmp_path, database_url)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in this test's event loop.

    The context is set up here, as the app's lifespan would (`test_serve` runs the real one):
    the lifespan's task group cannot span a pytest-asyncio fixture's setup and teardown.
    """
    app.state.ctx = Context.create(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await app.state.ctx.close()


@pytest.fixture
async def client_without_database(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose database does not answer (nothing listens on port 1)."""
    down = make_settings(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    app = create_app(down)
    app.state.ctx = Context.create(down)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client
    finally:
        await app.state.ctx.close()


@pytest.fixture
def ctx(app: Litestar, client: httpx.AsyncClient) -> Context:
    """The running app's context (engine, keys, cipher); needs `client` to have started it."""
    context: Context = app.state.ctx
    return context


KeyMaker = Callable[[str], Awaitable[dict[str, str]]]


@pytest.fixture
def auth(ctx: Context) -> KeyMaker:
    """`await auth("events:write")` gives headers carrying a new key with those scopes."""

    async def make(scopes: str) -> dict[str, str]:
        new = await ctx.keys.create(f"test {scopes}", scopes)
        return {"Authorization": f"Bearer {new.secret}"}

    return make


@pytest.fixture
async def admin(auth: KeyMaker) -> dict[str, str]:
    return await auth("admin")


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment for running `shopcast` commands against the test database."""
    return {
        "SHOPCAST_DATABASE_URL": settings.database.url,
        "SHOPCAST_DATA_DIR": str(settings.data_dir),
        "SHOPCAST_SECRET_KEY": SECRET,
    }


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for a `shopcast serve` to answer /health/ready (30 s), else fail with its log."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"shopcast serve did not start:\n{log.read_text()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    """A real SMTP server on loopback (aiosmtpd) whose answers a test can script."""
    server = FakeSmtp(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
async def providers() -> AsyncIterator[FakeProviders]:
    """Local servers shaped like FCM, X, Weibo, WeChat, Facebook and a webhook."""
    fake = await FakeProviders().start()
    yield fake
    await fake.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own, so that the test can stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server (binary)", "not on PATH")
    assert binary is not None
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url, process
    process.kill()
    process.wait()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can tell a failed test (screenshots)."""
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    return report
