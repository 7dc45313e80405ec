"""What is popular (optionally time-decayed: trending) and what this user buys again."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.base import Interactions, Recommender, sparse_from_arrays, sparse_to_arrays

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

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        return np.broadcast_to(self.item_scores_, (len(users), self.n_items_)).copy()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores_ = arrays["item_scores"]


class BuyAgain(Recommender):
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

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        scores = np.asarray(history.toarray(), dtype=np.float32) * 1e-6  # fresher events order ties
        known = users < self.user_items_.shape[0]
        if known.any():
            scores[known] += self.user_items_[users[known]].toarray()
        return scores

    def _arrays(self) -> dict[str, np.ndarray]:
        return sparse_to_arrays("user_items", self.user_items_)

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_items_ = sparse_from_arrays("user_items", arrays)
