"""Migrations build exactly the schema the code declares, and go down and up again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.settings import DatabaseSettings
from service.storage.engine import create_engine
from service.storage.migrate import downgrade, upgrade
from service.storage.tables import metadata


async def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=database_url))
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == [], "tables.py and the migrations differ: add a migration"


def test_downgrade_to_nothing_and_back(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "base")
    upgrade(url)

    import asyncio

    async def tables() -> set[str]:
        engine = create_engine(DatabaseSettings(url=url))
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    assert {t.name for t in metadata.sorted_tables} <= asyncio.run(tables())
