"""`shopcast keys create|list|revoke`."""

from __future__ import annotations

import click

from service.cli.common import run_with_context, say, settings_from_env
from service.security.scopes import SCOPES, parse_scopes


@click.group()
def keys() -> None:
    """API keys (stored hashed; a key is shown once, when created)."""


@keys.command()
@click.option("--name", required=True, help="who or what uses the key")
@click.option("--scopes", required=True, help=f"comma-separated: {', '.join(SCOPES)}")
@click.option("--rate-limit", type=click.IntRange(min=1), help="requests a minute (default: settings)")
def create(name: str, scopes: str, rate_limit: int | None) -> None:
    """Create a key and print it, alone, on standard output."""
    try:
        parse_scopes(scopes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scopes") from None
    new = run_with_context(settings_from_env(), lambda ctx: ctx.keys.create(name, scopes, rate_limit))
    say(f"created key {new.key.id} ({new.key.name}: {','.join(new.key.scopes)}); it is shown only now")
    click.echo(new.secret)


@keys.command(name="list")
def list_keys() -> None:
    """List keys (never the secrets)."""
    found = run_with_context(settings_from_env(), lambda ctx: ctx.keys.list())
    click.echo(f"{'id':>4}  {'prefix':<12}  {'name':<24}  {'scopes':<40}  status")
    for key in found:
        status = "revoked" if key.revoked_at else "active"
        click.echo(
            f"{key.id:>4}  {key.prefix:<12}  {key.name[:24]:<24}  {','.join(key.scopes)[:40]:<40}  {status}"
        )


@keys.command()
@click.argument("key_id", type=int)
def revoke(key_id: int) -> None:
    """Revoke the key with this id."""
    if not run_with_context(settings_from_env(), lambda ctx: ctx.keys.revoke(key_id)):
        raise click.ClickException(f"no active key with id {key_id}")
    say(f"revoked key {key_id}")
