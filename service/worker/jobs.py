"""The jobs `shopcast worker` schedules, built from settings."""

from __future__ import annotations

from service.context import Context
from service.retraining import train_and_publish
from service.worker.schedule import ScheduledJob
from training.pipeline import TrainConfig


def scheduled_jobs(ctx: Context) -> list[ScheduledJob]:
    jobs = []
    settings = ctx.settings.jobs
    if settings.retrain_cron:

        async def retrain() -> str:
            tune = settings.retrain_tune_seconds or None
            result, version, verdict = await train_and_publish(ctx, None, TrainConfig(), tune_seconds=tune)
            ndcg = result.metrics.get("novel", {}).get("ndcg@10", 0.0)
            if version is None:
                return f"not published, the served model stays: {verdict}"
            return f"published {version} (novel NDCG@10 {ndcg:.4f}): {verdict}"

        jobs.append(ScheduledJob("retrain", settings.retrain_cron, retrain))
    return jobs
