"""`shopcast db upgrade`."""

from __future__ import annotations

import click

from service.cli.common import prepare_database, say, settings_from_env


@click.group()
def db() -> None:
    """Database schema."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration."""
    settings = settings_from_env()
    prepare_database(settings)
    say("database is up to date")
