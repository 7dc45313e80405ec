"""Hyperparameter search within a time budget, scored on the validation split.

Random search (seeded) over the factorization, the neighbours, "buy again" recency and the
event-type weights. Trial 0 is the default configuration, so tuning never does worse on
validation than not tuning. The score is validation NDCG@10 averaged over the two modes.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training.events import EventLog
from training.pipeline import TrainConfig, validate

SPACE: dict[str, tuple[Any, ...]] = {
    "als.factors": (32, 64, 128),
    "als.regularization": (0.01, 0.05, 0.1, 0.5),
    "als.alpha": (1.0, 2.0, 5.0, 10.0, 20.0),
    "als.iterations": (10, 15, 25),
    "item_knn.neighbours": (50, 100, 200),
    "item_knn.method": ("bm25", "cosine"),
    "weight.add_to_cart": (1.0, 2.0, 3.0, 5.0),
    "weight.wishlist": (1.0, 2.0, 4.0),
    "weight.purchase": (2.0, 4.0, 8.0),
}


@dataclass(frozen=True)
class Trial:
    number: int
    choice: dict[str, Any]
    score: float
    seconds: float


def apply(base: TrainConfig, choice: dict[str, Any]) -> TrainConfig:
    """A config with the chosen values set."""
    als, knn, weights = dict(base.als), dict(base.item_knn), dict(base.weighting.event_weights)
    changes: dict[str, Any] = {}
    for key, value in choice.items():
        group, _, name = key.partition(".")
        if group == "als":
            als[name] = value
        elif group == "item_knn":
            knn[name] = value
        elif group == "weight":
            weights[name] = value
        else:
            changes[key] = value
    weighting = dataclasses.replace(base.weighting, event_weights=weights)
    return dataclasses.replace(base, als=als, item_knn=knn, weighting=weighting, **changes)


def tune(
    log: EventLog,
    base: TrainConfig,
    *,
    budget_seconds: float,
    item_texts: tuple[str, ...] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    max_trials: int = 200,
) -> tuple[TrainConfig, list[Trial]]:
    """The best configuration found within the budget, and every trial."""
    rng = random.Random(base.seed)
    deadline = time.monotonic() + budget_seconds
    trials: list[Trial] = []
    best_config, best_score = base, float("-inf")
    for number in range(max_trials):
        if number and time.monotonic() >= deadline:
            break
        choice = {} if number == 0 else {key: rng.choice(values) for key, values in SPACE.items()}
        config = apply(base, choice)
        started = time.monotonic()
        _, validation, _ = validate(log, config, item_texts=item_texts)
        score = sum(validation.values()) / len(validation)
        trial = Trial(number, choice, score, time.monotonic() - started)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
        if score > best_score:
            best_config, best_score = config, score
    return best_config, trials


def parse_budget(text: str) -> float:
    """`90s`, `10m`, `1h` or plain seconds."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"budget {text!r}: use e.g. 90s, 10m or 1h") from None
