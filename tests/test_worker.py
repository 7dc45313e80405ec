"""Scheduled retraining: one run per slot across workers, failures recorded, served model kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.context import Context
from service.storage.tables import scheduled_runs
from service.worker.schedule import ScheduledJob, claim, run_schedule, run_slot

SLOT = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)


def test_cron_slots_and_bad_expressions() -> None:
    job = ScheduledJob("retrain", "0 3 * * *", lambda: asyncio.sleep(0, "ok"))
    assert job.next_slot(datetime(2026, 12, 3, 2, 59, tzinfo=UTC)) == SLOT
    assert job.next_slot(SLOT) == SLOT + timedelta(days=1)
    with pytest.raises(ValueError, match="not a cron expression"):
        ScheduledJob("retrain", "every night", lambda: asyncio.sleep(0, "ok"))


async def test_only_one_worker_runs_a_slot(ctx: Context) -> None:
    runs: list[str] = []

    async def work() -> str:
        runs.append("ran")
        await asyncio.sleep(0.05)
        return "done"

    job = ScheduledJob("retrain", "0 3 * * *", work)
    outcomes = await asyncio.gather(*(run_slot(ctx.engine, job, SLOT) for _ in range(4)))
    assert runs == ["ran"]
    assert outcomes.count("done") == 1
    assert outcomes.count(None) == 3
    assert not await claim(ctx.engine, "retrain", SLOT, worker="late")
    assert await claim(ctx.engine, "retrain", SLOT + timedelta(days=1))


async def test_a_failing_run_is_recorded_and_the_schedule_goes_on(ctx: Context) -> None:
    async def broken() -> str:
        raise RuntimeError("disk full")

    job = ScheduledJob("retrain", "0 3 * * *", broken)
    assert await run_slot(ctx.engine, job, SLOT) == "failed: RuntimeError: disk full"
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(select(scheduled_runs))).one()
    assert row.outcome == "failed: RuntimeError: disk full"
    assert row.finished_at is not None


async def test_the_loop_runs_due_slots_and_stops(ctx: Context) -> None:
    clock = [SLOT - timedelta(microseconds=1)]
    ran: list[datetime] = []
    stop = asyncio.Event()

    async def work() -> str:
        ran.append(clock[0])
        clock[0] += timedelta(days=1)  # time passes; the next slot is due at once
        if len(ran) == 2:
            stop.set()
        return "ok"

    def now() -> datetime:
        if clock[0] < SLOT:  # the first call schedules; then the slot is due
            clock[0] = SLOT
            return SLOT - timedelta(microseconds=1)
        return clock[0]

    job = ScheduledJob("retrain", "0 3 * * *", work)
    await asyncio.wait_for(run_schedule(ctx.engine, [job], stop=stop, now=now), timeout=10)
    assert len(ran) == 2
    async with ctx.engine.connect() as conn:
        slots = [r.slot for r in await conn.execute(select(scheduled_runs).order_by(scheduled_runs.c.slot))]
    assert slots == [SLOT, SLOT + timedelta(days=1)]


async def test_scheduled_retraining_publishes_or_leaves_the_served_model(ctx: Context, env, tmp_path) -> None:
    import pyarrow.parquet as pq

    from service.retraining import registry_for
    from service.worker.jobs import scheduled_jobs
    from tests.test_cli import run
    from tests.test_training import synthetic_shop

    [job] = scheduled_jobs(ctx)
    assert job.cron == "0 3 * * *"
    failed = await run_slot(ctx.engine, job, SLOT)
    assert failed is not None
    assert failed.startswith("failed: TrainingError: 0 events")
    assert await registry_for(ctx).current() is None

    path = tmp_path / "events.parquet"
    pq.write_table(synthetic_shop(users=80, items=40), path)
    assert (await asyncio.to_thread(run, env, "import", "events", str(path)))[0] == 0
    outcome = await run_slot(ctx.engine, job, SLOT + timedelta(days=1))
    assert outcome is not None
    assert outcome.startswith("published ")
    assert (await registry_for(ctx).current()) is not None
