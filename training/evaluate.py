"""Offline evaluation on a time split: rank over all items, in two variants.

- `novel`: relevant = test items the user never met in train; seen items are filtered out
  (what a "discover" recommendation is for);
- `all`: every test item is relevant, repeats included, nothing filtered (rebuying counts).

Only users with history in train are evaluated (at most `max_users`, sampled with the seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.base import mask_seen, ranked, sparse_at, top_k
from training.events import EVENT_CODES, EventLog
from training.metrics import all_metrics

VARIANTS = ("novel", "all")
MODE_OF_VARIANT = {"novel": "discover", "all": "all"}
Scorer = Callable[[np.ndarray, sp.csr_matrix], np.ndarray]
# (users, their history rows, k, exclude_seen) -> top-k item rows per user, -1 where none
Ranker = Callable[[np.ndarray, sp.csr_matrix, int, bool], np.ndarray]


@dataclass(frozen=True)
class Relevance:
    """Who is evaluated and what was relevant to each (a sparse user x item 0/1 matrix)."""

    users: np.ndarray
    matrix: sp.csr_matrix

    @property
    def counts(self) -> np.ndarray:
        return np.asarray(self.matrix[self.users].sum(axis=1)).ravel().astype(np.int64)


def target_mask(log: EventLog, target: tuple[str, ...] | None) -> np.ndarray:
    if target is None:
        return np.ones(len(log), dtype=bool)
    return np.isin(log.types, [EVENT_CODES[name] for name in target])


def relevance(
    train_history: sp.csr_matrix,
    test: EventLog,
    *,
    variant: str,
    target: tuple[str, ...] | None,
    max_users: int,
    seed: int,
) -> Relevance:
    """Relevant (user, item) pairs of the test events for a variant."""
    n_users, n_items = train_history.shape
    test = test.select(target_mask(test, target))
    pairs = sp.csr_matrix(
        (np.ones(len(test), dtype=np.float32), (test.users, test.items)), shape=(n_users, n_items)
    )
    pairs.sum_duplicates()
    pairs.data[:] = 1.0
    if variant == "novel":
        seen = train_history.copy()
        seen.data[:] = 1.0
        pairs = pairs - pairs.multiply(seen)
        pairs.eliminate_zeros()
    elif variant != "all":
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    has_history = np.diff(train_history.indptr) > 0
    users = np.flatnonzero(has_history & (np.diff(pairs.tocsr().indptr) > 0))
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return Relevance(users=users, matrix=pairs.tocsr())


def batch_size(n_items: int) -> int:
    """Users scored at once: dense score arrays stay around 20 million entries."""
    return max(16, min(512, 20_000_000 // max(n_items, 1)))


def ranker_of(model: Any, **options: Any) -> Ranker:
    """A ranker from anything with `recommend(users, history, n, exclude_seen=..., **options)`."""

    def rank_with(users: np.ndarray, rows: sp.csr_matrix, k: int, exclude_seen: bool) -> np.ndarray:
        items: np.ndarray = model.recommend(users, rows, k, exclude_seen=exclude_seen, **options)[0]
        return items

    return rank_with


def dense_ranker(scorer: Scorer) -> Ranker:
    """A ranker from a dense scorer (references that score every item, such as EASE)."""

    def rank_with(users: np.ndarray, rows: sp.csr_matrix, k: int, exclude_seen: bool) -> np.ndarray:
        scores = scorer(users, rows)
        if exclude_seen:
            mask_seen(scores, rows)
        return ranked(*top_k(scores, k))[0]

    return rank_with


def rank(
    ranker: Ranker, history: sp.csr_matrix, users: np.ndarray, k: int, *, exclude_seen: bool
) -> np.ndarray:
    """Top-k item rows for each user (-1 where fewer than k items could be ranked)."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    batch = batch_size(history.shape[1])
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        items = ranker(chunk, history[chunk], k, exclude_seen)
        out[start : start + len(chunk), : items.shape[1]] = items
    return out


def evaluate(
    ranker: Ranker, history: sp.csr_matrix, truth: Relevance, *, exclude_seen: bool, k: int = 20
) -> dict[str, float]:
    """Every metric at 10 and 20, and coverage, for one ranker on one variant's relevance."""
    if not len(truth.users):
        return {"users": 0.0}
    recommended = rank(ranker, history, truth.users, k, exclude_seen=exclude_seen)
    hits = sparse_at(truth.matrix[truth.users], recommended) > 0
    metrics = all_metrics(hits, truth.counts, recommended, history.shape[1])
    metrics["users"] = float(len(truth.users))
    return metrics
