"""Ingest a stream of records in batches, atomically or batch by batch, and report every line.

Non-atomic: each batch commits on its own; the report says which lines were rejected and why,
and if the database fails part-way, `IngestInterrupted` carries how far it got.
Atomic: one transaction; any rejected line rolls everything back (`applied` is false).
"""

from __future__ import annotations

import asyncio
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
    if not atomic:
        last_line = await _consume(
            source, kind, report, batch_rows, _BatchWriter(kind, report, engine, on_batch)
        )
        report.committed_through_line = last_line
        return report
    async with engine.connect() as conn:
        transaction = await conn.begin()
        writer = _BatchWriter(kind, report, conn, on_batch)
        last_line = await _consume(source, kind, report, batch_rows, writer)
        if report.rejected:
            await transaction.rollback()
            report.applied = False
            report.accepted = report.duplicates = report.unknown_items = 0
        else:
            await transaction.commit()
            report.committed_through_line = last_line
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


class _BatchWriter:
    """Writes one batch at a time in the background, while the next batch is being prepared.

    Given an engine, each batch commits on its own; given a connection, all go into its
    transaction.
    """

    def __init__(
        self,
        kind: RecordKind,
        report: IngestReport,
        target: AsyncEngine | AsyncConnection,
        on_batch: Callable[[IngestReport], None] | None,
    ) -> None:
        self._kind = kind
        self._report = report
        self._target = target
        self._on_batch = on_batch
        self._pending: asyncio.Task[None] | None = None

    async def submit(self, rows: list[Any], last_line: int) -> None:
        await self.wait()
        self._pending = asyncio.create_task(self._write(rows, last_line))

    async def wait(self) -> None:
        task, self._pending = self._pending, None
        if task is not None:
            await task

    async def _write(self, rows: list[Any], last_line: int) -> None:
        if isinstance(self._target, AsyncConnection):
            counts = await self._kind.write(self._target, rows)
        else:
            try:
                async with self._target.begin() as conn:
                    counts = await self._kind.write(conn, rows)
            except Exception as exc:
                raise IngestInterrupted(self._report, exc) from exc
            self._report.committed_through_line = last_line
        self._report.add_counts(counts)
        if self._on_batch is not None:
            self._on_batch(self._report)


async def _consume(
    source: Source, kind: RecordKind, report: IngestReport, batch_rows: int, writer: _BatchWriter
) -> int:
    """Prepare every record and hand full batches to the writer; returns the last line read."""
    batch: list[Any] = []
    last_line = 0
    try:
        async for line, record in source:
            last_line = line
            row = _prepare(kind, line, record, report)
            if row is not None:
                batch.append(row)
                if len(batch) >= batch_rows:
                    await writer.submit(batch, last_line)
                    batch = []
        if batch:
            await writer.submit(batch, last_line)
    finally:
        await writer.wait()
    return last_line
