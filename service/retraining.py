"""The retraining job shared by `shopcast train` and the worker's schedule: train, gate, publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models import ArtifactError
from service.context import Context
from training.events import EventLog, read_file
from training.gate import decide
from training.pipeline import Progress, TrainConfig, TrainResult, train
from training.registry import ModelRegistry, ModelVersion
from training.store import load_events, with_catalog
from training.tuning import Trial, tune

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def registry_for(ctx: Context) -> ModelRegistry:
    return ModelRegistry(ctx.engine, ctx.settings.data_dir / "models")


async def roll_back(ctx: Context, version: str) -> ModelVersion:
    """Serve an earlier version again, and tell the serving processes."""
    current = await registry_for(ctx).rollback(version)
    await ctx.serving.notify_model_change(current.version)
    return current


async def load_log(ctx: Context, events_path: Path | None) -> tuple[EventLog, tuple[str, ...]]:
    """Events from a file or the store, with the catalog's items and their text."""
    events = read_file(events_path) if events_path else await load_events(ctx.engine)
    return await with_catalog(ctx.engine, events)


async def train_and_publish(
    ctx: Context,
    events_path: Path | None,
    config: TrainConfig,
    *,
    tolerance: float = 0.05,
    force: bool = False,
    tune_seconds: float | None = None,
    progress: Progress | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    say: Say = log.info,
) -> tuple[TrainResult, str | None, str]:
    """Train (after tuning, when asked), and publish when the gate passes (or `force`).

    Returns the result, the version (None when refused: the served model is untouched) and the
    gate's verdict.
    """
    registry = registry_for(ctx)
    events, texts = await load_log(ctx, events_path)
    if tune_seconds:
        best, trials = await asyncio.to_thread(
            tune, events, config, budget_seconds=tune_seconds, item_texts=texts, on_trial=on_trial
        )
        top = max(trials, key=lambda t: t.score)
        say(
            f"tuning: {len(trials)} trials; best validation NDCG@10 {top.score:.4f} "
            f"(default {trials[0].score:.4f})"
        )
        config = best
    result = await asyncio.to_thread(train, events, config, item_texts=texts, progress=progress)
    if tune_seconds:
        result.bundle.metadata["tuning"] = {
            "trials": len(trials),
            "best": top.choice,
            "best_score": top.score,
        }
    try:
        served = await registry.load_current()
    except ArtifactError as exc:
        say(f"the served model cannot be read ({exc}); comparing against nothing")
        served = None
    decision = await asyncio.to_thread(decide, result, served, events, config, tolerance=tolerance)
    if not decision.passed and not force:
        return result, None, decision.describe()
    if not decision.passed:
        say(f"WARNING: publishing with --force although {decision.describe()}")
    summary: dict[str, Any] = {"split": result.split, "gate": decision.describe(), "seconds": result.seconds}
    version = await registry.publish(result.bundle, forced=not decision.passed, summary=summary)
    await ctx.serving.notify_model_change(version)  # serving processes swap now instead of at their next poll
    return result, version, decision.describe()
