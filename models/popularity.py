"""What is popular (optionally time-decayed: trending) and what this user buys again."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.base import (
    Interactions,
    Recommender,
    SparseScores,
    sparse_at,
    sparse_from_arrays,
    sparse_to_arrays,
)

DAY = 86_400.0


def decay(ages_seconds: np.ndarray, half_life_days: float | None) -> np.ndarray:
    """Exponential decay by age; `None` means no decay (every event counts fully)."""
    if not half_life_days:
        return np.ones_like(ages_seconds, dtype=np.float32)
    ages = np.maximum(ages_seconds, 0.0) / (half_life_days * DAY)
    result: np.ndarray = np.power(0.5, ages).astype(np.float32)
    return result


class Popularity(Recommender):
    """The same ranking for everyone: weighted event counts, decayed by age when `half_life_days`."""

    name = "popularity"

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_days = half_life_days

    def _fit(self, data: Interactions) -> None:
        weight = data.weights * decay(data.now - data.timestamps, self.half_life_days)
        self.item_scores_ = np.bincount(data.item_rows, weights=weight, minlength=data.n_items).astype(
            np.float32
        )
        self.order_ = np.argsort(-self.item_scores_, kind="stable")

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        return np.broadcast_to(self.item_scores_, (len(users), self.n_items_)).copy()

    def recommend(
        self, users: np.ndarray, history: sp.csr_matrix, n: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The global order, each user's seen items skipped: no per-user scoring."""
        self._check_fitted()
        n = min(n, self.n_items_)
        history = sp.csr_matrix(history)
        longest = int(np.diff(history.indptr).max(initial=0)) if exclude_seen else 0
        width = min(self.n_items_, n + longest)
        candidates = np.broadcast_to(self.order_[:width], (len(users), width))
        if exclude_seen:
            seen = sparse_at(history, candidates) != 0
            keep = np.argsort(seen, axis=1, kind="stable")[:, :n]  # unseen first, in popularity order
            candidates = np.where(
                np.take_along_axis(seen, keep, axis=1), -1, np.take_along_axis(candidates, keep, axis=1)
            )
        else:
            candidates = candidates[:, :n]
        scores = np.where(candidates >= 0, self.item_scores_[np.maximum(candidates, 0)], -np.inf)
        return candidates.astype(np.int64), scores.astype(np.float32)

    def score_pairs(self, users: np.ndarray, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return np.where(items >= 0, self.item_scores_[np.maximum(items, 0)], 0.0).astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores_ = arrays["item_scores"]
        self.order_ = np.argsort(-self.item_scores_, kind="stable")


class BuyAgain(SparseScores):
    """The user's own items, by how often, how recently and how strongly (event weight) they met them.

    On repeat-heavy shops (groceries, daily goods) this alone often beats collaborative models;
    it scores only items the user has seen, so other sources fill the rest.
    """

    name = "buy_again"

    def __init__(self, half_life_days: float | None = 14.0) -> None:
        self.half_life_days = half_life_days

    def _fit(self, data: Interactions) -> None:
        weight = data.weights * decay(data.now - data.timestamps, self.half_life_days)
        matrix = sp.csr_matrix(
            (weight, (data.user_rows, data.item_rows)), shape=(data.n_users, data.n_items), dtype=np.float32
        )
        matrix.sum_duplicates()
        self.user_items_ = matrix

    def sparse_scores(self, users: np.ndarray, history: sp.csr_matrix) -> sp.csr_matrix:
        users = np.asarray(users, dtype=np.int64)
        scores = sp.csr_matrix(history, dtype=np.float32) * np.float32(1e-6)  # fresher events order ties
        known = users < self.user_items_.shape[0]
        own = sp.csr_matrix(scores.shape, dtype=np.float32)
        if known.any():
            rows = np.where(known, users, 0)
            own = sp.diags(known.astype(np.float32)) @ self.user_items_[rows]
        return sp.csr_matrix(scores + own)

    def _arrays(self) -> dict[str, np.ndarray]:
        return sparse_to_arrays("user_items", self.user_items_)

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_items_ = sparse_from_arrays("user_items", arrays)
