"""`shopcast import items|users|events PATH`: CSV, NDJSON or Parquet (gzip too, `-` for stdin)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import click
import msgspec
from tqdm import tqdm

from service.cli.common import run_with_context, say, settings_from_env
from service.context import Context
from service.ingest.kinds import EventKind, ItemKind, RecordKind, UserKind
from service.ingest.pipeline import IngestInterrupted, IngestReport, run_ingest
from service.ingest.sources import FORMATS, detect_format, file_records, open_input

SHOWN_ERRORS = 20


def kind_for(name: str, ctx: Context) -> RecordKind:
    channels = ctx.settings.api.channels
    kinds: dict[str, RecordKind] = {
        "events": EventKind(channels=channels),
        "items": ItemKind(channels=channels),
        "users": UserKind(cipher=ctx.cipher),
    }
    return kinds[name]


async def _aiter(records: Iterator[tuple[int, Any]]) -> AsyncIterator[tuple[int, Any]]:
    for record in records:
        yield record


async def import_file(
    ctx: Context,
    kind_name: str,
    path: str,
    *,
    fmt: str | None = None,
    atomic: bool = False,
    dry_run: bool = False,
    batch_size: int = 5_000,
    progress: bool = False,
) -> IngestReport:
    """Import one file into the store; the report counts and names every rejected line."""
    kind = kind_for(kind_name, ctx)
    with (
        open_input(path) as source,
        tqdm(
            total=source.size,
            unit="B",
            unit_scale=True,
            desc=f"import {kind_name}",
            disable=not progress,
            file=sys.stderr,
        ) as bar,
    ):

        def advance(report: IngestReport) -> None:
            bar.update(max(0, source.position() - bar.n))
            bar.set_postfix(lines=report.lines, rejected=report.rejected, refresh=False)

        records = file_records(source.handle, detect_format(path, fmt), kind.record_type)
        return await run_ingest(
            ctx.engine,
            kind,
            _aiter(records),
            atomic=atomic,
            batch_rows=batch_size,
            dry_run=dry_run,
            on_batch=advance,
        )


def describe(report: IngestReport, kind: str, dry_run: bool) -> str:
    if dry_run:
        stored = f"{report.lines - report.rejected} valid, nothing stored (dry run)"
    elif not report.applied:
        stored = "nothing stored (atomic import with rejected lines)"
    else:
        stored = f"{report.accepted} {kind} stored"
    parts = [f"{report.lines} lines", stored]
    if report.duplicates:
        parts.append(f"{report.duplicates} duplicates skipped")
    if report.unknown_items:
        parts.append(f"{report.unknown_items} for items not in the catalog (kept)")
    parts.append(f"{report.rejected} rejected")
    return ", ".join(parts)


@click.command(name="import")
@click.argument("kind", type=click.Choice(["items", "users", "events"]))
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="when the file name does not tell")
@click.option("--atomic", is_flag=True, help="store every line or none")
@click.option("--dry-run", is_flag=True, help="validate only; store nothing")
@click.option("--batch-size", default=5_000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON on stdout")
def import_(
    kind: str,
    path: str,
    fmt: str | None,
    atomic: bool,
    dry_run: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    """Import items, users or events from a CSV, NDJSON or Parquet file (`-` reads stdin).

    Exits 1 when any line was rejected; the lines, fields and reasons are listed.
    """
    try:
        detect_format(path, fmt)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="PATH") from None
    settings = settings_from_env()
    try:
        report = run_with_context(
            settings,
            lambda ctx: import_file(
                ctx,
                kind,
                path,
                fmt=fmt,
                atomic=atomic,
                dry_run=dry_run,
                batch_size=batch_size,
                progress=True,
            ),
        )
    except FileNotFoundError:
        raise click.ClickException(f"no such file: {path}") from None
    except IngestInterrupted as interrupted:
        say(f"the database failed: lines up to {interrupted.report.committed_through_line} are stored")
        raise click.ClickException(str(interrupted)) from None
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    say(describe(report, kind, dry_run))
    for error in report.errors[:SHOWN_ERRORS]:
        say(f"  line {error.line}: {error.field}: {error.message}")
    if report.rejected > SHOWN_ERRORS:
        say(f"  … and {report.rejected - SHOWN_ERRORS} more (use --json for the first 1000)")
    if report.rejected:
        raise SystemExit(1)
