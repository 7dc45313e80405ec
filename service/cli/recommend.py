"""`shopcast recommend`: one user's recommendations, or a batch export, from the published model.

Runs in this process on the store and the published model (no server needed), with the same
filters and rules as the API.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import IO

import click
from tqdm import tqdm

from service.cli.common import run_with_context, say, settings_from_env
from service.context import Context
from service.serving.answers import EXCLUDES, Answer, Filters


def _read_users(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    users = [line.strip() for line in lines if line.strip()]
    if not users:
        raise click.ClickException(f"{path} holds no user ids (one a line)")
    return users


def _writer(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".ndjson"):
        raise click.ClickException(f"--out must end in .csv or .ndjson, not {out.name!r}")
    return suffix


def _write(handle: IO[str], kind: str, user_id: str, answer: Answer, header: list[bool]) -> None:
    if kind == ".csv":
        writer = csv.writer(handle)
        if not header[0]:
            writer.writerow(["user_id", "item_id", "rank", "score"])
            header[0] = True
        for rank, pick in enumerate(answer.picks, start=1):
            writer.writerow([user_id, pick.item.item_id, rank, f"{pick.score:.6f}"])
    else:
        for rank, pick in enumerate(answer.picks, start=1):
            record = {
                "user_id": user_id,
                "item_id": pick.item.item_id,
                "rank": rank,
                "score": round(pick.score, 6),
            }
            handle.write(json.dumps(record) + "\n")


@click.command("recommend")
@click.option("--user", "user_id", help="one user id: prints their recommendations")
@click.option("--users-file", type=click.Path(path_type=Path, dir_okay=False), help="user ids, one a line")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="export to F.csv or F.ndjson")
@click.option("-n", "count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--channel", help="only items available on this channel")
@click.option("--exclude", type=click.Choice(EXCLUDES), default="purchased", show_default=True)
def recommend(
    user_id: str | None,
    users_file: Path | None,
    out: Path | None,
    count: int,
    channel: str | None,
    exclude: str,
) -> None:
    """Recommendations for one user (--user) or many (--users-file with --out)."""
    if (user_id is None) == (users_file is None):
        raise click.UsageError("give either --user ID or --users-file F (with --out)")
    if users_file is not None and out is None:
        raise click.UsageError("--users-file needs --out F.csv or F.ndjson")
    settings = settings_from_env()
    if channel is not None and channel not in settings.api.channels:
        raise click.BadParameter(f"unknown channel {channel!r}; known: {', '.join(settings.api.channels)}")
    users = [user_id] if user_id is not None else _read_users(users_file)  # type: ignore[arg-type]
    kind = _writer(out) if out is not None else ""

    async def work(ctx: Context) -> None:
        await ctx.serving.ensure_ready()
        if ctx.serving.model is None:
            say("no model is published yet: popular items answer (run `shopcast train`)")
        if out is None:
            answer = ctx.answers.for_user(users[0], count, Filters(channel=channel), exclude)
            say(f"{users[0]}: {answer.strategy}, model {answer.model_version or 'none'}")
            for rank, pick in enumerate(answer.picks, start=1):
                item = pick.item
                click.echo(
                    f"{rank:>3}  {item.item_id:<20} {pick.score:>9.4f}  {pick.source:<16} {item.title}"
                )
            return
        with out.open("w", encoding="utf-8", newline="") as handle:
            header = [False]
            for user in tqdm(users, desc="recommend", unit="user", file=sys.stderr):
                answer = ctx.answers.for_user(user, count, Filters(channel=channel), exclude)
                _write(handle, kind, user, answer, header)
        say(f"wrote recommendations for {len(users)} users to {out}")

    run_with_context(settings, work)
