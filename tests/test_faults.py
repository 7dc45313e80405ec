"""Faults: the database gone or failing part-way, and what callers are told."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.context import Context
from service.ingest.kinds import EventKind, WriteCounts
from service.ingest.pipeline import IngestInterrupted, run_ingest
from service.records import EventIn
from service.settings import DatabaseSettings
from service.storage import engine as storage_engine
from service.storage.engine import create_engine
from service.storage.tables import events
from tests.conftest import POSTGRES_ADMIN_URL


class FailsOnSecondBatch(EventKind):
    """Writes like EventKind, but the database 'fails' on the second batch."""

    batches = 0

    async def write(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> WriteCounts:
        self.batches += 1
        if self.batches == 2:
            raise ConnectionResetError("database connection lost")
        return await super().write(conn, rows)


async def numbered_events(count: int):
    for n in range(1, count + 1):
        yield (
            n,
            EventIn(user_id="u", item_id="i", event="view", timestamp=1_700_000_000 + n, event_id=f"e{n}"),
        )


async def test_a_failure_part_way_reports_what_was_committed(ctx: Context) -> None:
    kind = FailsOnSecondBatch(channels=("web",))
    with pytest.raises(IngestInterrupted) as raised:
        await run_ingest(ctx.engine, kind, numbered_events(25), batch_rows=10)
    report = raised.value.report
    assert report.committed_through_line == 10
    assert report.accepted == 10
    async with ctx.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(events))).scalar_one() == 10
    again = await run_ingest(ctx.engine, EventKind(channels=("web",)), numbered_events(25), batch_rows=10)
    assert (again.accepted, again.duplicates) == (15, 10), "resending the whole file completes it once"


async def test_an_atomic_ingest_failing_part_way_stores_nothing(ctx: Context) -> None:
    kind = FailsOnSecondBatch(channels=("web",))
    with pytest.raises(ConnectionResetError):
        await run_ingest(ctx.engine, kind, numbered_events(25), batch_rows=10, atomic=True)
    async with ctx.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(events))).scalar_one() == 0


async def test_database_unreachable_is_503_not_500(client_without_database: httpx.AsyncClient) -> None:
    client = client_without_database
    response = await client.post(
        "/v1/events",
        json={"user_id": "u", "item_id": "i", "event": "view", "timestamp": 1_700_000_000},
        headers={"Authorization": "Bearer sck_anything"},
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "database unavailable" in response.json()["detail"]
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["database"] == "unavailable"
    assert (await client.get("/health/live")).status_code == 200


async def test_the_console_with_its_database_away_says_so_on_a_page(
    client_without_database: httpx.AsyncClient,
) -> None:
    client = client_without_database
    client.cookies.set("shopcast_console", "some-session", path="/console")
    response = await client.get("/console/campaigns")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "The database is not answering" in response.text
    login = await client.get("/console/login")  # needs no database
    assert login.status_code == 200


def test_a_value_the_database_refuses_is_the_clients_422_and_other_driver_errors_503() -> None:
    from sqlalchemy.exc import DBAPIError

    from service.errors import handle_driver_error

    class Refused(Exception):
        sqlstate = "22021"  # invalid byte sequence (a NUL in text)

    class Deadlock(Exception):
        sqlstate = "40P01"

    request: Any = None
    assert handle_driver_error(request, DBAPIError("q", {}, Refused())).status_code == 422
    assert handle_driver_error(request, DBAPIError("q", {}, Deadlock())).status_code == 503


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(pid: int) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_pooled_connection_the_server_dropped_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle long enough, a connection is pinged at checkout; in steady use, its loss fails once."""
    engine = create_engine(DatabaseSettings(postgres_url, pool_size=1))
    try:
        monkeypatch.setattr(storage_engine, "IDLE_PING_SECONDS", 0.0)  # every checkout counts as idle
        first = await _backend_pid(engine)
        await _terminate(first)
        second = await _backend_pid(engine)
        assert second != first, "the dropped connection was replaced before the statement ran"

        monkeypatch.setattr(storage_engine, "IDLE_PING_SECONDS", 3600.0)  # in steady use: no ping
        await _terminate(second)
        with pytest.raises(DBAPIError) as lost:
            await _backend_pid(engine)
        assert lost.value.connection_invalidated
        assert await _backend_pid(engine) not in (first, second), "then a fresh connection"
    finally:
        await engine.dispose()
