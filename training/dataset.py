"""From an event log to training data: event-type weights, time decay, repeats, pruning, split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from models import Interactions
from models.popularity import decay
from training.events import EVENT_CODES, EVENT_TYPES, EventLog

# Strong signals count several views' worth; removals and refunds count nothing. These are
# starting points: `shopcast train --tune` searches the cart, wishlist and purchase weights.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "add_to_cart": 3.0,
    "remove_from_cart": 0.0,
    "wishlist": 2.0,
    "purchase": 4.0,
    "refund": 0.0,
    "rate": 2.0,
}


@dataclass(frozen=True)
class Weighting:
    """How events become matrix entries: type weights, optional time decay, damped repeats."""

    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = None
    min_item_events: int = 1

    def per_event(self, log: EventLog) -> np.ndarray:
        table = np.zeros(len(EVENT_TYPES), dtype=np.float32)
        for name, weight in self.event_weights.items():
            if name not in EVENT_CODES:
                raise ValueError(
                    f"unknown event type {name!r} in event weights; known: {', '.join(EVENT_TYPES)}"
                )
            table[EVENT_CODES[name]] = weight
        weights: np.ndarray = table[log.types]
        return weights


def interactions(
    log: EventLog,
    weighting: Weighting,
    *,
    n_users: int,
    n_items: int,
    item_texts: tuple[str, ...] | None = None,
) -> Interactions:
    """Training data from these events; rows and columns are the log's codes."""
    weights = weighting.per_event(log)
    now = log.window[1]
    if weighting.half_life_days:
        weights = weights * decay(now - log.timestamps, weighting.half_life_days)
    keep = weights > 0
    if weighting.min_item_events > 1:
        counts = np.bincount(log.items[keep], minlength=n_items)
        keep &= counts[log.items] >= weighting.min_item_events
    users, items, weights = log.users[keep], log.items[keep], weights[keep]
    matrix = sp.csr_matrix((weights, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data = np.log1p(matrix.data)  # repeats count, with diminishing returns
    return Interactions(
        matrix=matrix,
        user_rows=users,
        item_rows=items,
        timestamps=log.timestamps[keep],
        weights=weights,
        sessions=log.sessions[keep],
        now=now,
        item_texts=item_texts,
    )


@dataclass(frozen=True)
class Split:
    """One global time cutoff: test is the last `test_share` of events; validation likewise of train."""

    train: EventLog
    test: EventLog
    cutoff: float

    @classmethod
    def temporal(cls, log: EventLog, test_share: float = 0.2) -> Split:
        if len(log) < 2:
            raise ValueError("too few events to split by time")
        cutoff = float(np.quantile(log.timestamps, 1.0 - test_share))
        test = log.timestamps >= cutoff
        if test.all() or not test.any():
            raise ValueError("all events share one timestamp: a time split is impossible")
        return cls(log.select(~test), log.select(test), cutoff)
