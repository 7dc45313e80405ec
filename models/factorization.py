"""Matrix factorization with implicit: ALS (with fold-in for users it has not seen) and BPR."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.cpu.topk import topk
from threadpoolctl import ThreadpoolController  # scikit-learn's own dependency

from models.base import Interactions, Recommender, ranked, sparse_top_k, top_k

_THREADPOOLS: ThreadpoolController | None = None


def one_blas_thread() -> Any:
    """BLAS held to one thread; the libraries are looked up once per process (a lookup costs ms)."""
    global _THREADPOOLS
    if _THREADPOOLS is None:
        _THREADPOOLS = ThreadpoolController()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


def _seed(random_state: int | None) -> int | None:
    return None if random_state is None else int(random_state)


class _Factors(Recommender):
    """Scores are dot products of user and item factors."""

    supports_similar = True
    num_threads: int = 0
    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _user_vectors(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        vectors = np.zeros((len(users), self.item_factors_.shape[1]), dtype=np.float32)
        known = users < self.user_factors_.shape[0]
        vectors[known] = self.user_factors_[users[known]]
        return vectors

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        return np.asarray(self._user_vectors(users, history) @ self.item_factors_.T, dtype=np.float32)

    def recommend(
        self, users: np.ndarray, history: sp.csr_matrix, n: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """implicit's multithreaded top-k over the item factors: no users x items array is built."""
        self._check_fitted()
        vectors = self._user_vectors(np.asarray(users, dtype=np.int64), history)
        return self._top(vectors, history, n, exclude_seen)

    def recommend_both(
        self, users: np.ndarray, history: sp.csr_matrix, n: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The top `n` without seen items, and with them: one search over the catalog, not two.

        The overall top `n` lies within the unseen top `n` and the seen items, so the second
        is ranked from those: each seen item's score is one dot product.
        """
        self._check_fitted()
        vectors = self._user_vectors(np.asarray(users, dtype=np.int64), history)
        unseen_items, unseen_scores = self._top(vectors, history, n, exclude_seen=True)
        seen = sp.csr_matrix(history)
        seen_rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        seen_scores = np.einsum("nf,nf->n", vectors[seen_rows], self.item_factors_[seen.indices])
        found = unseen_items >= 0
        pool = sp.csr_matrix(
            (
                np.concatenate([unseen_scores[found], seen_scores]).astype(np.float32),
                (
                    np.concatenate([np.nonzero(found)[0], seen_rows]),
                    np.concatenate([unseen_items[found], seen.indices]),
                ),
            ),
            shape=seen.shape,
        )
        return (unseen_items, unseen_scores), sparse_top_k(pool, min(n, self.n_items_))

    def _top(
        self, vectors: np.ndarray, history: sp.csr_matrix, n: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        seen = sp.csr_matrix(history, dtype=np.float32) if exclude_seen else None
        n = min(n, self.n_items_)
        with one_blas_thread():
            threads = 1 if len(vectors) < 64 else self.num_threads  # a thread pool per call costs more
            items, scores = topk(self.item_factors_, vectors, n, filter_query_items=seen, num_threads=threads)
        return ranked(items, scores)

    def score_pairs(self, users: np.ndarray, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        self._check_fitted()
        vectors = self._user_vectors(np.asarray(users, dtype=np.int64), history)
        scores = np.einsum("uf,uwf->uw", vectors, self.item_factors_[np.maximum(items, 0)])
        scores[items < 0] = 0.0
        return np.asarray(scores, dtype=np.float32)

    def similar_items(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        factors = self.item_factors_
        norms = np.linalg.norm(factors, axis=1)
        norms[norms == 0] = 1.0
        unit = factors / norms[:, None]
        scores = unit[np.asarray(items)] @ unit.T
        scores[np.arange(len(items)), items] = -np.inf
        return top_k(scores.astype(np.float32), n)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]


class ALS(_Factors):
    """Implicit-feedback ALS (Hu, Koren, Volinsky): confidence 1 + alpha * weight."""

    name = "als"
    _gram: np.ndarray | None = None  # YᵀY + λI for fold-in, computed on first use

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        random_state: int | None = None,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, data: Interactions) -> None:
        self._run(data, self.iterations, None)

    def fit_from(self, data: Interactions, previous: ALS, iterations: int = 3) -> ALS:
        """Fit starting from `previous` factors (same id space, more data): a few iterations suffice."""
        previous._check_fitted()
        self.n_items_ = data.n_items
        self._run(data, iterations, previous)
        return self

    def _run(self, data: Interactions, iterations: int, previous: ALS | None) -> None:
        with one_blas_thread():  # implicit parallelizes itself; BLAS threads would fight it
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=iterations,
                random_state=_seed(self.random_state),
                num_threads=self.num_threads,
            )
            if previous is not None and previous.user_factors_.shape == (data.n_users, self.factors):
                model.user_factors = np.array(previous.user_factors_, dtype=np.float32)
                model.item_factors = np.array(previous.item_factors_, dtype=np.float32)
            model.fit(data.matrix, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._gram = None  # fold-in's YᵀY belongs to the old factors

    def _user_vectors(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        vectors = super()._user_vectors(users, history)
        unseen = np.flatnonzero(users >= self.user_factors_.shape[0])
        if len(unseen):
            vectors[unseen] = self.fold_in(history[unseen])
        return vectors

    def _fold_in_base(self) -> np.ndarray:
        """YᵀY + λI, the same for every user: computed once per fitted (or loaded) model."""
        cached = self._gram
        if cached is None:
            factors = np.asarray(self.item_factors_, dtype=np.float64)
            cached = factors.T @ factors + self.regularization * np.eye(factors.shape[1])
            self._gram = cached
        return cached

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """User factors from weighted histories alone, with item factors fixed (one ALS half-step)."""
        self._check_fitted()
        item_factors = self.item_factors_
        base = self._fold_in_base()
        history = sp.csr_matrix(history)
        out = np.zeros((history.shape[0], item_factors.shape[1]), dtype=np.float32)
        for row in range(history.shape[0]):
            start, end = history.indptr[row], history.indptr[row + 1]
            if start == end:
                continue
            items = history.indices[start:end]
            confidence = self.alpha * history.data[start:end].astype(np.float64)
            factors = item_factors[items].astype(np.float64)
            lhs = base + (factors.T * confidence) @ factors
            rhs = (factors.T * (1.0 + confidence)).sum(axis=1)
            out[row] = np.linalg.solve(lhs, rhs)
        return out


class BPR(_Factors):
    """Bayesian personalized ranking (implicit's), optimizing pairwise order."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int | None = None,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, data: Interactions) -> None:
        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=_seed(self.random_state),
            num_threads=self.num_threads,
        )
        model.fit(data.matrix, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
