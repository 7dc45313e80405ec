"""Item-to-item models: neighbours from co-interaction (implicit's cosine or BM25) and
"bought together" co-occurrence within baskets or sessions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight
from sklearn.preprocessing import normalize

from models.base import (
    Interactions,
    SparseScores,
    sparse_from_arrays,
    sparse_to_arrays,
    strongest,
    top_k,
)

# A user's strongest history entries that item-to-item scores and neighbour fits use: long
# histories add little signal but cost quadratically (every pair of their items co-occurs).
HISTORY_CAP = 50
FIT_HISTORY_CAP = 500


class _ItemToItem(SparseScores):
    """Scores are the user's (strongest `HISTORY_CAP`) history times an item x item similarity."""

    supports_similar = True
    similarity_: sp.csr_matrix

    def sparse_scores(self, users: np.ndarray, history: sp.csr_matrix) -> sp.csr_matrix:
        return sp.csr_matrix(strongest(history, HISTORY_CAP) @ self.similarity_)

    def similar_items(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        scores = self.similarity_[np.asarray(items)].toarray().astype(np.float32)
        scores[scores <= 0] = -np.inf
        scores[np.arange(len(items)), items] = -np.inf
        return top_k(scores, n)

    def _arrays(self) -> dict[str, np.ndarray]:
        return sparse_to_arrays("similarity", self.similarity_)

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity_ = sparse_from_arrays("similarity", arrays)


class ItemKNN(_ItemToItem):
    """Item-item neighbours from who interacted with what (implicit's cosine or BM25)."""

    name = "item_knn"

    def __init__(self, neighbours: int = 100, method: str = "bm25", k1: float = 1.2, b: float = 0.75) -> None:
        self.neighbours = neighbours
        self.method = method
        self.k1 = k1
        self.b = b

    def _fit(self, data: Interactions) -> None:
        if self.method not in ("cosine", "bm25"):
            raise ValueError(f"method must be 'cosine' or 'bm25', not {self.method!r}")
        # Weighted here rather than by implicit's Cosine/BM25 recommenders, which hand COO to
        # their own fit (a warning each time); the neighbour search is implicit's.
        rows = strongest(data.matrix, FIT_HISTORY_CAP)
        if self.method == "bm25":
            matrix = sp.csr_matrix(bm25_weight(rows.T, self.k1, self.b).T, dtype=np.float64)
        else:
            matrix = sp.csr_matrix(normalize(rows.astype(np.float64), norm="l2", axis=0))
        self.similarity_ = _nearest(matrix, self.neighbours)


class CoPurchase(_ItemToItem):
    """Items that appear together in baskets (sessions), normalized like cosine."""

    name = "co_purchase"

    def __init__(self, neighbours: int = 50) -> None:
        self.neighbours = neighbours

    def _fit(self, data: Interactions) -> None:
        groups = data.sessions
        if groups is None or (groups < 0).all():
            groups = data.user_rows.astype(np.int64)
        known = groups >= 0
        codes, group_rows = np.unique(groups[known], return_inverse=True)
        baskets = sp.csr_matrix(
            (np.ones(int(known.sum()), dtype=np.float32), (group_rows, data.item_rows[known])),
            shape=(len(codes), data.n_items),
        )
        baskets.sum_duplicates()
        baskets.data[:] = 1.0  # presence, not counts
        unit = sp.csr_matrix(normalize(baskets.astype(np.float64), norm="l2", axis=0))  # cosine
        self.similarity_ = strongest(_nearest(unit, self.neighbours + 1), self.neighbours)  # + itself


def _nearest(weighted: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Item x item similarity (dot products of `weighted`'s columns), each item's `k` best kept,
    the item itself dropped. implicit's multithreaded search keeps the best as it goes, never
    the whole co-occurrence matrix (dense for popular items)."""
    model = ItemItemRecommender(K=k)
    model.fit(weighted, show_progress=False)
    similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
    similarity.setdiag(0)
    similarity.eliminate_zeros()
    return similarity
