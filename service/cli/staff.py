"""`shopcast staff create|list|password`: staff accounts for the console."""

from __future__ import annotations

import secrets
import sys

import click

from service.cli.common import run_with_context, say, settings_from_env
from service.console.staff import MIN_PASSWORD, ROLES
from service.errors import Conflict


@click.group()
def staff() -> None:
    """Staff who sign in to the console at /console (passwords stored as argon2 hashes)."""


def _password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated): read one line from stdin, or make one up."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return secrets.token_urlsafe(12), True


@staff.command()
@click.option("--email", required=True, help="the sign-in name")
@click.option("--role", type=click.Choice(ROLES), default="marketer", show_default=True)
@click.option("--name", help="shown in the console")
@click.option(
    "--password-stdin", is_flag=True, help=f"read the password (≥ {MIN_PASSWORD} characters) from stdin"
)
def create(email: str, role: str, name: str | None, password_stdin: bool) -> None:
    """Create a staff member; without --password-stdin, a password is made up and printed once."""
    password, generated = _password(password_stdin)
    try:
        member = run_with_context(
            settings_from_env(), lambda ctx: ctx.staff.create(email, password, role, name)
        )
    except (ValueError, Conflict) as exc:
        raise click.ClickException(str(exc)) from None
    say(f"created {member.role} {member.email}")
    if generated:
        say("password (shown only now):")
        click.echo(password)


@staff.command(name="list")
def list_staff() -> None:
    """Staff members and their roles."""
    for member in run_with_context(settings_from_env(), lambda ctx: ctx.staff.all()):
        click.echo(f"{member.email:<40} {member.role}")


@staff.command()
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="read the new password from stdin")
def password(email: str, password_stdin: bool) -> None:
    """Set a new password; without --password-stdin, one is made up and printed once."""
    new, generated = _password(password_stdin)
    try:
        changed = run_with_context(settings_from_env(), lambda ctx: ctx.staff.set_password(email, new))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not changed:
        raise click.ClickException(f"no staff member {email}")
    say(f"new password set for {email}")
    if generated:
        click.echo(new)
