"""Cron schedules, and one run per scheduled slot across every worker.

Each worker computes the next slot of a job's cron expression and, at that time, tries to
claim it by inserting `(job, slot)` into `scheduled_runs`. The primary key lets exactly one
worker win; the others skip the slot. A worker that dies mid-run leaves its row without an
outcome, and the next slot goes ahead as usual. Works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage.tables import scheduled_runs

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cron: str
    run: Callable[[], Awaitable[str]]  # returns a one-line outcome

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ValueError(f"job {self.name}: {self.cron!r} is not a cron expression (e.g. '0 3 * * *')")

    def next_slot(self, after: datetime) -> datetime:
        slot: datetime = croniter(self.cron, after.astimezone(UTC)).get_next(datetime)
        return slot.astimezone(UTC)


async def claim(engine: AsyncEngine, job: str, slot: datetime, worker: str = WORKER_ID) -> bool:
    """True for the one worker that gets to run `job` for `slot`."""
    try:
        async with engine.begin() as conn:
            await conn.execute(
                scheduled_runs.insert().values(
                    job=job, slot=slot, worker=worker, started_at=datetime.now(UTC)
                )
            )
    except IntegrityError:
        return False
    return True


async def finish(engine: AsyncEngine, job: str, slot: datetime, outcome: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(scheduled_runs)
            .where(scheduled_runs.c.job == job, scheduled_runs.c.slot == slot)
            .values(finished_at=datetime.now(UTC), outcome=outcome[:2_000])
        )


async def run_slot(engine: AsyncEngine, job: ScheduledJob, slot: datetime) -> str | None:
    """Claim and run one slot; the outcome, or None when another worker has it."""
    if not await claim(engine, job.name, slot):
        log.info("job %s %s: claimed by another worker", job.name, slot.isoformat())
        return None
    log.info("job %s %s: started", job.name, slot.isoformat())
    try:
        outcome = await job.run()
    except Exception as exc:  # a failed run is recorded, and the schedule goes on
        log.exception("job %s %s: failed", job.name, slot.isoformat())
        outcome = f"failed: {type(exc).__name__}: {exc}"
    await finish(engine, job.name, slot, outcome)
    log.info("job %s %s: %s", job.name, slot.isoformat(), outcome)
    return outcome


async def run_schedule(
    engine: AsyncEngine,
    jobs: list[ScheduledJob],
    *,
    stop: asyncio.Event,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Run every job at each of its slots until `stop` is set."""
    upcoming = {job.name: job.next_slot(now()) for job in jobs}
    while not stop.is_set():
        job = min(jobs, key=lambda j: upcoming[j.name])
        slot = upcoming[job.name]
        wait = (slot - now()).total_seconds()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(wait, 60.0))
            continue
        await run_slot(engine, job, slot)
        following = job.next_slot(slot)
        if following < now():  # slots missed while this one ran are skipped, not run as a backlog
            following = job.next_slot(now())
        upcoming[job.name] = following
