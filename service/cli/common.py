"""Helpers shared by the commands: settings, a context for one command run, messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from service.context import Context
from service.settings import Settings, load_settings
from service.storage.migrate import upgrade

T = TypeVar("T")


def say(message: str) -> None:
    """A message for the person at the terminal (standard error)."""
    click.echo(message, err=True)


def prepare_database(settings: Settings) -> None:
    upgrade(settings.database.url)


def run_with_context(settings: Settings, work: Callable[[Context], Awaitable[T]]) -> T:
    """Run `work` with a context, on a database brought up to date first."""
    prepare_database(settings)

    async def main() -> T:
        ctx = Context.create(settings)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(main())


def settings_from_env() -> Settings:
    return load_settings()
