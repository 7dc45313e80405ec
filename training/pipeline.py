"""The training job: weight, split, fit, learn blend weights, evaluate against baselines, refit.

split all events by time     train | test          (test: the last 20% of events)
split train the same way     train_a | validation
fit sources on train_a   ->  learn blend weights per mode on validation
fit on train             ->  evaluate on test, beside MostPopular
refit on all events      ->  the model to publish
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models import (
    ALS,
    Blend,
    BuyAgain,
    ContentSimilarity,
    CoPurchase,
    Interactions,
    ItemKNN,
    ModelBundle,
    Popularity,
)
from models.base import Recommender
from training.blending import learn_weights
from training.dataset import Split, Weighting, interactions
from training.evaluate import (
    MODE_OF_VARIANT,
    VARIANTS,
    Relevance,
    evaluate,
    ranker_of,
    relevance,
    target_mask,
)
from training.events import EventLog
from training.serving import serving_arrays

Progress = Callable[[str], None]
CODE_VERSION = importlib.metadata.version("shopcast")
MIN_EVENTS = 10
MAX_CLOCK_SKEW = 86_400.0
STAGES = (
    "fit on train_a",
    "learn blend weights",
    "fit on train",
    "evaluate on test",
    "refit on all events",
    "rank for serving",
)
ALS_DEFAULTS: dict[str, Any] = {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15}
ITEM_KNN_DEFAULTS: dict[str, Any] = {"neighbours": 100, "method": "bm25"}


class TrainingError(ValueError):
    """The data cannot make a model (too little of it, or of the wrong kind)."""


@dataclass(frozen=True)
class TrainConfig:
    weighting: Weighting = field(default_factory=Weighting)
    als: dict[str, Any] = field(default_factory=dict)
    item_knn: dict[str, Any] = field(default_factory=dict)
    buy_again_half_lives_days: tuple[float | None, ...] = (3.0, 14.0, 60.0, None)
    trending_half_lives_days: tuple[float, ...] = (1.0, 3.0, 7.0, 30.0)
    target: tuple[str, ...] | None = ("purchase",)
    test_share: float = 0.2
    max_eval_users: int = 5_000
    max_blend_users: int = 2_000  # validation users the blend weights are learned on
    seed: int = 42
    threads: int = 0
    sources: tuple[str, ...] | None = None  # restrict the blend to these sources (None: all)

    def components(self, with_content: bool) -> dict[str, Recommender]:
        als = ALS_DEFAULTS | self.als
        components: dict[str, Recommender] = {
            "als": ALS(**als, random_state=self.seed, num_threads=self.threads),
            "item_knn": ItemKNN(**(ITEM_KNN_DEFAULTS | self.item_knn)),
            "co_purchase": CoPurchase(),
            "popularity": Popularity(),
        }
        for days in self.trending_half_lives_days:
            components[f"trending_{days:g}d"] = Popularity(half_life_days=days)
        for half_life in self.buy_again_half_lives_days:
            name = f"buy_again_{half_life:g}d" if half_life else "buy_again"
            components[name] = BuyAgain(half_life_days=half_life)
        if with_content:
            components["content"] = ContentSimilarity()
        if self.sources is not None:
            unknown = set(self.sources) - set(components) - {"content"}  # content needs item text
            if unknown:
                raise TrainingError(f"unknown sources {sorted(unknown)}; known: {sorted(components)}")
            components = {name: c for name, c in components.items() if name in self.sources}
        return components

    def describe(self) -> dict[str, Any]:
        return {
            "event_weights": self.weighting.event_weights,
            "half_life_days": self.weighting.half_life_days,
            "als": self.als,
            "item_knn": self.item_knn,
            "target": list(self.target) if self.target else "all",
            "seed": self.seed,
        }


@dataclass
class TrainResult:
    bundle: ModelBundle
    metrics: dict[str, dict[str, float]]  # variant -> metric -> value (test split)
    baselines: dict[str, dict[str, dict[str, float]]]  # baseline -> variant -> metrics
    validation: dict[str, float]  # mode -> validation NDCG@10 of the learned blend
    split: dict[str, Any]
    seconds: dict[str, float]
    evaluated: Blend  # the blend fitted on the train split, as evaluated (for the quality gate)


def _check(log: EventLog, target: tuple[str, ...] | None) -> None:
    if len(log) < MIN_EVENTS:
        raise TrainingError(f"{len(log)} events: at least {MIN_EVENTS} are needed to train and evaluate")
    if len(np.unique(log.users)) < 2 or len(np.unique(log.items)) < 2:
        raise TrainingError("at least two users and two items with events are needed to learn anything")
    if np.ptp(log.timestamps) == 0:
        raise TrainingError("every event has the same timestamp: no time split is possible")
    future = log.timestamps > time.time() + MAX_CLOCK_SKEW
    if future.any():
        raise TrainingError(
            f"{int(future.sum())} events are in the future (latest at Unix time {log.timestamps.max():.0f}): "
            "fix the timestamps (milliseconds instead of seconds?)"
        )
    if target is not None and not target_mask(log, target).any():
        raise TrainingError(
            f"no {' or '.join(target)} events to learn and evaluate against; "
            "use --target all to count every event"
        )


def truth_for(history: Any, test: EventLog, variant: str, config: TrainConfig, max_users: int) -> Relevance:
    """What was relevant in `test` for `variant`, under the config's target and seed."""
    return relevance(
        history, test, variant=variant, target=config.target, max_users=max_users, seed=config.seed
    )


def training_data(
    events: EventLog, config: TrainConfig, n_users: int, n_items: int, item_texts: tuple[str, ...] | None
) -> Interactions:
    return interactions(events, config.weighting, n_users=n_users, n_items=n_items, item_texts=item_texts)


def validate(
    log: EventLog,
    config: TrainConfig,
    *,
    item_texts: tuple[str, ...] | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, float], Blend]:
    """Fit on train_a and learn blend weights on validation.

    Returns the weights per mode, the validation NDCG@10 per mode, and the blend fitted on train_a.
    """
    say = progress or (lambda _stage: None)
    with_content = item_texts is not None and any(t.strip() for t in item_texts)
    inner = Split.temporal(Split.temporal(log, config.test_share).train, config.test_share)
    say("fit on train_a")
    fit_a = training_data(
        inner.train, config, len(log.user_ids), len(log.item_ids), item_texts if with_content else None
    )
    blend = Blend(config.components(with_content)).fit(fit_a)
    say("learn blend weights")
    weights, validation = {}, {}
    for variant in VARIANTS:
        truth = truth_for(fit_a.matrix, inner.test, variant, config, config.max_blend_users)
        mode = MODE_OF_VARIANT[variant]
        weights[mode], validation[mode] = learn_weights(
            blend, fit_a.matrix, truth, exclude_seen=variant == "novel"
        )
    return weights, validation, blend


def train(
    log: EventLog,
    config: TrainConfig,
    *,
    item_texts: tuple[str, ...] | None = None,
    progress: Progress | None = None,
    refit: bool = True,
) -> TrainResult:
    """Run the whole job on an event log (sorted by time, ids coded).

    Without `refit` (evaluation only) the bundle holds the blend fitted on the train split.
    """
    say = progress or (lambda _stage: None)
    _check(log, config.target)
    n_users, n_items = len(log.user_ids), len(log.item_ids)
    with_content = item_texts is not None and any(t.strip() for t in item_texts)
    seconds: dict[str, float] = {}

    def data_of(events: EventLog) -> Any:
        return training_data(events, config, n_users, n_items, item_texts if with_content else None)

    outer = Split.temporal(log, config.test_share)
    started = time.perf_counter()
    weights, validation, blend_a = validate(log, config, item_texts=item_texts, progress=say)
    seconds["validation"] = time.perf_counter() - started

    say("fit on train")
    started = time.perf_counter()
    fit_train = data_of(outer.train)
    # Factors continue from the train_a fit: the same ids with more data need only a few iterations.
    blend = Blend(config.components(with_content), weights=weights).fit_from(fit_train, blend_a)
    popular = Popularity().fit(fit_train)
    say("evaluate on test")
    metrics: dict[str, dict[str, float]] = {}
    baselines: dict[str, dict[str, dict[str, float]]] = {"most_popular": {}}
    for variant in VARIANTS:
        truth = truth_for(fit_train.matrix, outer.test, variant, config, config.max_eval_users)
        mode, novel = MODE_OF_VARIANT[variant], variant == "novel"
        metrics[variant] = evaluate(ranker_of(blend, mode=mode), fit_train.matrix, truth, exclude_seen=novel)
        baselines["most_popular"][variant] = evaluate(
            ranker_of(popular), fit_train.matrix, truth, exclude_seen=novel
        )
    seconds["evaluation"] = time.perf_counter() - started

    final, serving = blend, {}
    if refit:
        say("refit on all events")
        started = time.perf_counter()
        everything = data_of(log)
        final = Blend(config.components(with_content), weights=weights).fit_from(everything, blend)
        seconds["refit"] = time.perf_counter() - started
        say("rank for serving")
        started = time.perf_counter()
        serving = serving_arrays(final, everything.matrix, log)
        seconds["serving"] = time.perf_counter() - started
    start, end = log.window
    split = {
        "cutoff": outer.cutoff,
        "validation_cutoff": Split.temporal(outer.train, config.test_share).cutoff,
        "events": len(log),
        "train_events": len(outer.train),
        "test_events": len(outer.test),
        "users": n_users,
        "items": n_items,
    }
    metadata = {
        "trained_at": time.time(),
        "code_version": CODE_VERSION,
        "data_window": {"start": start, "end": end},
        "parameters": config.describe(),
        "metrics": metrics,
        "baselines": baselines,
        "validation": validation,
        "split": split,
    }
    bundle = ModelBundle(final, log.user_ids, log.item_ids, metadata, serving)
    return TrainResult(bundle, metrics, baselines, validation, split, seconds, evaluated=blend)
