"""`shopcast train`, `shopcast evaluate` and `shopcast models list|rollback`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import msgspec
from tqdm import tqdm

from service.cli.common import run_with_context, say, settings_from_env
from service.context import Context
from service.retraining import load_log, registry_for, roll_back, train_and_publish
from training.dataset import DEFAULT_EVENT_WEIGHTS, Weighting
from training.events import EventDataError
from training.pipeline import STAGES, Progress, TrainConfig, TrainingError, TrainResult, train
from training.registry import RegistryError
from training.tuning import Trial, parse_budget

COLUMNS = (
    "ndcg@10",
    "ndcg@20",
    "recall@10",
    "recall@20",
    "precision@10",
    "map@10",
    "hit_rate@10",
    "coverage@20",
)


def results_table(result: TrainResult) -> list[dict[str, Any]]:
    rows = [{"model": "shopcast", "variant": v, "metrics": m} for v, m in result.metrics.items()]
    for name, variants in result.baselines.items():
        rows += [{"model": name, "variant": v, "metrics": m} for v, m in variants.items()]
    return rows


def print_table(rows: list[dict[str, Any]], split: dict[str, Any]) -> None:
    click.echo(
        f"time split: {split['train_events']} train / {split['test_events']} test events, "
        f"{split['users']} users, {split['items']} items"
    )
    click.echo(f"{'model':<14} {'variant':<8} {'users':>6} " + " ".join(f"{c:>12}" for c in COLUMNS))
    for row in sorted(rows, key=lambda r: (r["variant"], r["model"] != "shopcast")):
        metrics = row["metrics"]
        values = " ".join(f"{metrics.get(c, 0.0):>12.4f}" for c in COLUMNS)
        click.echo(f"{row['model']:<14} {row['variant']:<8} {int(metrics.get('users', 0)):>6} {values}")


@contextmanager
def stage_bar(stages: tuple[str, ...]) -> Iterator[Progress]:
    """A progress bar over the pipeline's stages, fed by its progress callback."""
    with tqdm(total=len(stages), desc="train", unit="step", file=sys.stderr) as bar:

        def progress(stage: str) -> None:
            bar.set_postfix_str(stage)
            if stage != stages[0]:
                bar.update(1)

        yield progress
        bar.update(bar.total - bar.n)


@contextmanager
def trial_bar() -> Iterator[Any]:
    with tqdm(desc="tune", unit="trial", file=sys.stderr) as bar:

        def report(trial: Trial) -> None:
            bar.update(1)
            bar.set_postfix(best=f"{trial.score:.4f}")

        yield report


def config_from(seed: int, threads: int, target: str) -> TrainConfig:
    return TrainConfig(
        weighting=Weighting(event_weights=dict(DEFAULT_EVENT_WEIGHTS)),
        target=None if target == "all" else (target,),
        seed=seed,
        threads=threads,
    )


async def train_with_progress(
    ctx: Context, events_path: Path | None, config: TrainConfig, **options: Any
) -> tuple[TrainResult, str | None, str]:
    with stage_bar(STAGES) as progress, trial_bar() as on_trial:
        return await train_and_publish(
            ctx, events_path, config, progress=progress, on_trial=on_trial, say=say, **options
        )


events_option = click.option(
    "--events",
    "events_path",
    type=click.Path(path_type=Path),
    help="train from this file instead of the store",
)
seed_option = click.option("--seed", default=42, show_default=True, help="same seed, same model")
threads_option = click.option(
    "--threads", default=0, show_default=True, help="fitting threads (0: all cores)"
)
target_option = click.option(
    "--target",
    type=click.Choice(["purchase", "all"]),
    default="purchase",
    show_default=True,
    help="what counts as relevant in the test period",
)


@click.command(name="train")
@events_option
@seed_option
@threads_option
@target_option
@click.option("--tune", is_flag=True, help="search hyperparameters on the validation split first")
@click.option("--budget", default="10m", show_default=True, help="time for --tune: 90s, 10m, 1h")
@click.option("--force", is_flag=True, help="publish even if the quality gate refuses (said loudly)")
@click.option("--tolerance", default=0.05, show_default=True, help="how much worse than served is still fine")
@click.option("--json", "as_json", is_flag=True, help="print metrics and the version as JSON")
def train_command(
    events_path: Path | None,
    seed: int,
    threads: int,
    target: str,
    tune: bool,
    budget: str,
    force: bool,
    tolerance: float,
    as_json: bool,
) -> None:
    """Train, evaluate against baselines, and publish a new model version if it is not worse.

    Exits 3 when the quality gate refuses the new model (the served model stays).
    """
    try:
        tune_seconds = parse_budget(budget) if tune else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget") from None
    config = config_from(seed, threads, target)
    try:
        result, version, verdict = run_with_context(
            settings_from_env(),
            lambda ctx: train_with_progress(
                ctx, events_path, config, tolerance=tolerance, force=force, tune_seconds=tune_seconds
            ),
        )
    except (EventDataError, TrainingError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(
            msgspec.json.encode({"version": version, "gate": verdict, "results": results_table(result)})
        )
    else:
        print_table(results_table(result), result.split)
    say(verdict)
    if version is None:
        say("not published: the served model is unchanged (use --force to override)")
        raise SystemExit(3)
    say(f"published model version {version}")


@click.command(name="evaluate")
@events_option
@seed_option
@threads_option
@target_option
@click.option("--json", "as_json", is_flag=True, help='{"split": ..., "results": [...]} on stdout')
def evaluate_command(events_path: Path | None, seed: int, threads: int, target: str, as_json: bool) -> None:
    """Offline metrics of the pipeline and its baselines on a time split (nothing is published)."""
    config = config_from(seed, threads, target)

    async def job(ctx: Context) -> TrainResult:
        events, texts = await load_log(ctx, events_path)
        with stage_bar(STAGES[:-1]) as progress:
            return await asyncio.to_thread(
                train, events, config, item_texts=texts, progress=progress, refit=False
            )

    try:
        result = run_with_context(settings_from_env(), job)
    except (EventDataError, TrainingError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(msgspec.json.encode({"split": result.split, "results": results_table(result)}))
    else:
        print_table(results_table(result), result.split)


@click.group()
def models() -> None:
    """Published model versions."""


@models.command(name="list")
def list_models() -> None:
    """Versions, newest first; the served one is marked."""
    versions = run_with_context(settings_from_env(), lambda ctx: registry_for(ctx).versions())
    if not versions:
        say("no model is published yet: run `shopcast train`")
        return
    click.echo(f"{'':2}{'version':<26} {'created (UTC)':<20} {'ndcg@10 novel':>14} {'ndcg@10 all':>12}")
    for v in versions:
        mark = "* " if v.current else "  "
        novel = v.metrics.get("novel", {}).get("ndcg@10", 0.0)
        every = v.metrics.get("all", {}).get("ndcg@10", 0.0)
        forced = "  (forced)" if v.forced else ""
        click.echo(
            f"{mark}{v.version:<26} {v.created_at:%Y-%m-%d %H:%M:%S} {novel:>14.4f} {every:>12.4f}{forced}"
        )


@models.command()
@click.argument("version")
def rollback(version: str) -> None:
    """Serve VERSION again."""
    try:
        current = run_with_context(settings_from_env(), lambda ctx: roll_back(ctx, version))
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    say(f"now serving {current.version}")
