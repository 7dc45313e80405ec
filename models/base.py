"""What every recommender shares: the training data, the estimator contract and top-k ranking.

Models follow scikit-learn's rules: `__init__` stores hyperparameters, `fit` returns `self`,
learned state ends in `_`, and use before `fit` raises `NotFittedError`. Everything is in row
space (users and items are row numbers); the id maps live with the artifact.

Scoring is batch-first. `recommend(users, history, n)` gives each user's top `n` (item rows padded
with -1, scores with -inf) without scoring every item where a model can avoid it;
`score_pairs(users, history, items)` scores given items per user (how a blend combines sources);
`score(users, history)` gives the dense `(len(users), n_items)` array, for small uses and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp


class NotFittedError(ValueError, AttributeError):
    """The model was used before `fit` (or `load`)."""


@dataclass(frozen=True)
class Interactions:
    """Training data in row space.

    `matrix` is the weighted user x item matrix (CSR, float32); the event log arrays (one entry
    per event, aligned) feed the models that care about time, type or sessions.
    """

    matrix: sp.csr_matrix
    user_rows: np.ndarray  # int32, one per event
    item_rows: np.ndarray  # int32
    timestamps: np.ndarray  # float64 Unix seconds
    weights: np.ndarray  # float32, the event's weight
    sessions: np.ndarray | None = None  # int64 session (basket) codes, -1 when unknown
    now: float = 0.0  # the reference time for decay: the end of the data window
    item_texts: tuple[str, ...] | None = None  # title, category, tags, description; for content

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top `k` of a dense score array: (indices, scores), best first; -inf never ranks."""
    k = min(k, scores.shape[1])
    if k <= 0:
        empty = np.empty((scores.shape[0], 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


class Recommender:
    """The contract every model meets; subclasses implement `_fit`, `score` and the array state."""

    name: ClassVar[str] = "base"
    supports_similar: ClassVar[bool] = False

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def fit(self, data: Interactions) -> Self:
        self.n_items_ = data.n_items
        self._fit(data)
        return self

    def _fit(self, data: Interactions) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit() or load() first")

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Scores of every item for each user; `history` holds the users' weighted rows."""
        raise NotImplementedError

    def recommend(
        self, users: np.ndarray, history: sp.csr_matrix, n: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `n` items for each user: (item rows, scores), best first; -1 and -inf where none is left."""
        scores = self.score(users, history)
        if exclude_seen:
            mask_seen(scores, history)
        return ranked(*top_k(scores, n))

    def recommend_both(
        self, users: np.ndarray, history: sp.csr_matrix, n: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """`recommend` without the users' seen items, and with them (a blend ranks both modes at once)."""
        return (
            self.recommend(users, history, n, exclude_seen=True),
            self.recommend(users, history, n, exclude_seen=False),
        )

    def score_pairs(self, users: np.ndarray, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """Scores of the given item rows (one row of them per user; -1 scores 0)."""
        return take_items(self.score(users, history), items)

    def similar_items(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The `n` items most like each given item (itself excluded)."""
        raise NotImplementedError(f"{type(self).__name__} does not find similar items")

    def arrays(self) -> dict[str, np.ndarray]:
        """The learned state, as plain arrays (saved with numpy, no pickle)."""
        self._check_fitted()
        return {"n_items": np.array([self.n_items_]), **self._arrays()}

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Recommender:
        model = cls(**params)
        model.n_items_ = int(arrays["n_items"][0])
        model._restore(arrays)
        return model

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


def ranked(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mark slots whose score is not a real score (masked, or a library's -FLT_MAX) as item -1."""
    items = items.astype(np.int64, copy=True)
    scores = scores.astype(np.float32, copy=True)
    missing = ~np.isfinite(scores) | (scores <= -1e38)
    items[missing] = -1
    scores[missing] = -np.inf
    return items, scores


def take_items(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Gather dense scores at item rows per user; -1 slots give 0."""
    out = np.take_along_axis(scores, np.maximum(items, 0), axis=1).astype(np.float32)
    out[items < 0] = 0.0
    return out


def _descending_key(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """One int64 per entry ordering by row, then value descending (float bits made sortable)."""
    bits = (-values.astype(np.float32)).view(np.int32).astype(np.int64)
    bits = np.where(bits < 0, ~bits & 0x7FFFFFFF, bits | 0x80000000)
    key: np.ndarray = (rows.astype(np.int64) << 32) | bits
    return key


DENSE_SHARE = 0.1  # above this share of stored entries, sparse_top_k ranks a dense copy


def sparse_top_k(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top `k` of a CSR matrix's stored entries, padded with -1 / -inf.

    One argsort of a packed (row, value) key: several times faster than a lexsort or two
    stable sorts, and than densifying rows to partition them, unless the rows are nearly full
    (content similarity over words most items share): then a dense copy is partitioned.
    """
    matrix = sp.csr_matrix(matrix)
    n_rows, n_cols = matrix.shape
    k = max(0, min(k, n_cols))
    if matrix.nnz > DENSE_SHARE * n_rows * n_cols:  # nearly full rows: partitioning beats sorting
        dense = np.full((n_rows, n_cols), -np.inf, dtype=np.float32)
        dense[np.repeat(np.arange(n_rows), np.diff(matrix.indptr)), matrix.indices] = matrix.data
        return ranked(*top_k(dense, k))
    items = np.full((n_rows, k), -1, dtype=np.int64)
    scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
    order = np.argsort(_descending_key(rows, matrix.data))
    rank = np.arange(len(order)) - matrix.indptr[rows[order]]
    keep = rank < k
    chosen = order[keep]
    items[rows[chosen], rank[keep]] = matrix.indices[chosen]
    scores[rows[chosen], rank[keep]] = matrix.data[chosen]
    return items, scores


def strongest(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's `k` largest entries (the rest dropped); only rows holding more are touched."""
    matrix = sp.csr_matrix(matrix)
    heavy = np.flatnonzero(np.diff(matrix.indptr) > k)
    if not len(heavy):
        return matrix
    items, scores = sparse_top_k(matrix[heavy], k)
    light = matrix.copy()
    light.data[np.repeat(np.isin(np.arange(matrix.shape[0]), heavy), np.diff(matrix.indptr))] = 0
    light.eliminate_zeros()
    top = sp.csr_matrix(
        (scores.ravel(), (np.repeat(heavy, k), items.ravel())), shape=matrix.shape, dtype=matrix.dtype
    )
    return sp.csr_matrix(light + top)


DENSE_BLOCK_CELLS = 8_000_000  # rows densified at a time by sparse_at (32 MB of float32)


def sparse_at(matrix: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """Values of a CSR matrix at (row, items[row, j]); -1 slots and absent entries give 0.

    scipy looks each pair up by scanning its row, so for long rows (content scores over words
    most items share) reading from dense blocks of rows is far cheaper.
    """
    out = np.zeros(items.shape, dtype=np.float32)
    valid = items >= 0
    if not valid.any():
        return out
    matrix = sp.csr_matrix(matrix)
    n_rows, n_cols = matrix.shape
    if int(valid.sum()) * (matrix.nnz / max(1, n_rows)) > 2 * n_rows * n_cols:
        step = max(1, DENSE_BLOCK_CELLS // max(1, n_cols))
        for start in range(0, n_rows, step):
            block = matrix[start : start + step].toarray()
            where = valid[start : start + step]
            found = np.take_along_axis(block, np.where(where, items[start : start + step], 0), axis=1)
            out[start : start + step] = np.where(where, found, 0.0)
        return out
    rows = np.broadcast_to(np.arange(items.shape[0])[:, None], items.shape)
    out[valid] = np.asarray(matrix[rows[valid], items[valid]], dtype=np.float32).ravel()
    return out


def drop_seen(scores: sp.csr_matrix, history: sp.csr_matrix) -> sp.csr_matrix:
    """Sparse scores without the entries of items in each user's history."""
    seen = sp.csr_matrix(history, copy=True)
    seen.data[:] = 1.0
    out = sp.csr_matrix(scores - scores.multiply(seen))
    out.eliminate_zeros()
    return out


class SparseScores(Recommender):
    """A model whose scores are mostly zero: it ranks and gathers from a sparse product."""

    def sparse_scores(self, users: np.ndarray, history: sp.csr_matrix) -> sp.csr_matrix:
        raise NotImplementedError

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self.sparse_scores(users, history).toarray(), dtype=np.float32)

    def recommend(
        self, users: np.ndarray, history: sp.csr_matrix, n: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        return self.top_of(self.sparse_scores(users, history), history, n, exclude_seen=exclude_seen)

    @staticmethod
    def top_of(
        scores: sp.csr_matrix, history: sp.csr_matrix, n: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """`recommend` from scores already computed (a blend proposes and scores from one product)."""
        return sparse_top_k(drop_seen(scores, history) if exclude_seen else scores, n)

    def score_pairs(self, users: np.ndarray, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return sparse_at(self.sparse_scores(users, history), items)


def mask_seen(scores: np.ndarray, history: sp.csr_matrix) -> None:
    """Set the scores of items in each user's history to -inf, in place."""
    rows, cols = history.nonzero()
    scores[rows, cols] = -np.inf


def normalize_rows(scores: np.ndarray) -> np.ndarray:
    """Each row scaled into [0, 1] by its maximum (rows of zeros stay zero), so sources can be blended."""
    top = scores.max(axis=1, keepdims=True)
    top[~np.isfinite(top) | (top <= 0)] = 1.0
    out = np.clip(scores / top, 0.0, None)
    out[~np.isfinite(out)] = 0.0
    result: np.ndarray = out.astype(np.float32, copy=False)
    return result


def sparse_to_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    matrix = matrix.tocsr()
    return {
        f"{prefix}.data": matrix.data.astype(np.float32),
        f"{prefix}.indices": matrix.indices.astype(np.int32),
        f"{prefix}.indptr": matrix.indptr.astype(np.int64),
        f"{prefix}.shape": np.array(matrix.shape, dtype=np.int64),
    }


def sparse_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{prefix}.shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]), shape=shape
    )
