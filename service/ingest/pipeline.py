"""Ingest a stream of records in batches, atomically or batch by batch, and report every line.

Non-atomic: each batch commits on its own; the report says which lines were rejected and why,
and if the database fails part-way, `IngestInterrupted` carries how far it got.
Atomic: one transaction; any rejected line rolls everything back (`applied` is false).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.errors import FieldProblem
from service.ingest.kinds import RecordKind, WriteCounts

MAX_REPORTED_ERRORS = 1_000


class LineError(msgspec.Struct):
    line: int
    field: str
    message: str


class IngestReport(msgspec.Struct, kw_only=True):
    """What happened to every line: counts, and the first errors with line and field."""

    lines: int = 0  # records read (blank lines are not records)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    unknown_items: int = 0
    applied: bool = True
    committed_through_line: int = 0
    errors: list[LineError] = msgspec.field(default_factory=list)
    errors_truncated: bool = False

    def add_error(self, line: int, problem: FieldProblem) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineError(line, problem.key, problem.message))
        else:
            self.errors_truncated = True

    def add_counts(self, counts: WriteCounts) -> None:
        self.accepted += counts.accepted
        self.duplicates += counts.duplicates
        self.unknown_items += counts.unknown_items


class IngestInterrupted(Exception):
    """The store failed part-way through a non-atomic ingest; `report` says what was committed."""

    def __init__(self, report: IngestReport, cause: BaseException) -> None:
        super().__init__(f"ingest interrupted after line {report.committed_through_line}: {cause}")
        self.report = report


Source = AsyncIterable[tuple[int, Any]]


async def run_ingest(
    engine: AsyncEngine,
    kind: RecordKind,
    source: Source,
    *,
    atomic: bool = False,
    batch_rows: int = 5_000,
    dry_run: bool = False,
    on_batch: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Validate every record from `source` (`(line, record or FieldProblem)`) and write them."""
    report = IngestReport()
    if dry_run:
        async for line, record in source:
            _prepare(kind, line, record, report)
        report.applied = False
        return report
    if atomic:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            last_line = await _consume(conn, kind, source, report, batch_rows, None, on_batch)
            if report.rejected:
                await transaction.rollback()
                report.applied = False
                report.accepted = report.duplicates = report.unknown_items = 0
            else:
                await transaction.commit()
                report.committed_through_line = last_line
        return report
    await _consume(None, kind, source, report, batch_rows, engine, on_batch)
    return report


def _prepare(kind: RecordKind, line: int, record: Any, report: IngestReport) -> Any:
    report.lines += 1
    if isinstance(record, FieldProblem):
        report.add_error(line, record)
        return None
    try:
        return kind.prepare(record)
    except FieldProblem as problem:
        report.add_error(line, problem)
        return None


async def _consume(
    conn: AsyncConnection | None,
    kind: RecordKind,
    source: Source,
    report: IngestReport,
    batch_rows: int,
    engine: AsyncEngine | None,
    on_batch: Callable[[IngestReport], None] | None,
) -> int:
    """Prepare and write every record; returns the last line number read."""
    batch: list[Any] = []
    last_line = 0

    async def flush() -> None:
        if batch:
            if conn is not None:
                report.add_counts(await kind.write(conn, batch))
            else:
                assert engine is not None
                try:
                    async with engine.begin() as own:
                        counts = await kind.write(own, batch)
                except Exception as exc:
                    raise IngestInterrupted(report, exc) from exc
                report.add_counts(counts)
                report.committed_through_line = last_line
            batch.clear()
        if on_batch is not None:
            on_batch(report)

    async for line, record in source:
        last_line = line
        row = _prepare(kind, line, record, report)
        if row is not None:
            batch.append(row)
            if len(batch) >= batch_rows:
                await flush()
    await flush()
    if conn is None:
        report.committed_through_line = last_line
    return last_line
