"""JSON request batches: validated whole, then written in one transaction (all or nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import FieldProblem, InvalidInput, PayloadTooLarge
from service.ingest.kinds import RecordKind, WriteCounts


def check_batch_size(count: int, limit: int, bulk_hint: str) -> None:
    if count > limit:
        raise PayloadTooLarge(f"{count} records in one request; at most {limit}. {bulk_hint}")


def prepare_batch(kind: RecordKind, records: Sequence[Any], *, indexed: bool = True) -> list[Any]:
    """Rows for every record, or InvalidInput naming each bad record's index and field."""
    rows: list[Any] = []
    problems: list[FieldProblem] = []
    for index, record in enumerate(records):
        try:
            rows.append(kind.prepare(record))
        except FieldProblem as problem:
            key = f"[{index}].{problem.key}" if indexed else problem.key
            problems.append(FieldProblem(key, problem.message))
    if problems:
        raise InvalidInput.from_problems(
            f"{len(problems)} of {len(records)} {kind.name} rejected; nothing was stored", problems
        )
    return rows


async def write_batch(engine: AsyncEngine, kind: RecordKind, rows: list[Any]) -> WriteCounts:
    async with engine.begin() as conn:
        return await kind.write(conn, rows)
