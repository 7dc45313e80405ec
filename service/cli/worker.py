"""`shopcast worker`: deliver messages and run scheduled jobs until stopped (SIGINT or SIGTERM)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import click

from service.cli.common import run_with_context, say, settings_from_env
from service.context import Context
from service.ops.logs import configure_logging
from service.worker.jobs import scheduled_jobs
from service.worker.schedule import WORKER_ID, run_schedule


@click.command()
def worker() -> None:
    """Deliver messages, run campaigns and scheduled jobs (retraining on SHOPCAST_RETRAIN_CRON) until stopped.

    Any number of workers can run against one database: each claims its own batches of messages,
    campaigns are planned chunk by chunk by whichever worker gets there, and each scheduled slot
    runs once.
    """
    settings = settings_from_env()
    configure_logging(settings.log)

    async def loop(ctx: Context) -> None:
        try:
            jobs = scheduled_jobs(ctx)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        if not jobs:
            say("no job is scheduled (SHOPCAST_RETRAIN_CRON is empty)")
        try:  # campaign messages are rendered here, with the served model's recommendations
            await ctx.serving.ensure_ready()
        except Exception as exc:  # the database may come later: the loops retry
            say(f"serving state not loaded at start ({type(exc).__name__}); retrying in the background")
        ctx.serving.start()
        channels = ", ".join(sorted(ctx.messaging.channels))
        say(f"delivering messages as {WORKER_ID} on: {channels}")
        for job in jobs:
            say(f"{job.name}: {job.cron} (UTC), next at {job.next_slot(datetime.now(UTC)).isoformat()}")
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        tasks = [
            asyncio.create_task(ctx.messaging.sender.run(WORKER_ID, stop)),
            asyncio.create_task(ctx.campaigns.runner.run(stop)),
        ]
        if jobs:
            tasks.append(asyncio.create_task(run_schedule(ctx.engine, jobs, stop=stop)))
        await stop.wait()
        await asyncio.gather(*tasks)
        say("worker stopped")

    run_with_context(settings, loop)
