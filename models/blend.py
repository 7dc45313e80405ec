"""A weighted blend of recommenders, with one set of weights per mode.

Modes: `discover` (items new to the user; seen items are never recommended) and `all` (repeats
allowed, as when people rebuy groceries). Each source's scores are scaled into [0, 1] per user
before weighting, and popularity always adds a small share, so a user or item that a source
knows nothing about is still filled from the next source.

Ranking is two-stage: each active source proposes its top `PER_SOURCE` items, every source
scores the union, and the weighted sum ranks it (no source scores the whole catalog per user).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from models.base import (
    Interactions,
    NotFittedError,
    Recommender,
    SparseScores,
    normalize_rows,
    ranked,
    sparse_at,
    top_k,
)
from models.factorization import ALS

MODES = ("discover", "all")
FILL_WEIGHT = 1e-3
PER_SOURCE = 20
Proposal = tuple[np.ndarray, np.ndarray]  # a source's item rows per user, and their scores


def union_rows(proposals: list[np.ndarray]) -> np.ndarray:
    """Per row, the distinct items of all proposals (sorted, -1 padding at the end)."""
    items = np.sort(np.concatenate(proposals, axis=1), axis=1)
    repeated = np.zeros(items.shape, dtype=bool)
    repeated[:, 1:] = items[:, 1:] == items[:, :-1]
    items[repeated] = -1
    items = -np.sort(-items, axis=1)  # real items first, descending; -1 last
    width = int((items >= 0).sum(axis=1).max(initial=0))
    return items[:, : max(width, 1)]


class Blend(Recommender):
    name = "blend"

    def __init__(
        self,
        components: dict[str, Recommender],
        weights: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.components = components
        self.weights = weights

    def get_params(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def fit_from(self, data: Interactions, previous: Blend) -> Blend:
        """Fit, warm-starting the components that can from `previous` (same ids, more data)."""
        self.n_items_ = data.n_items
        self._fit(data, previous)
        return self

    def _fit(self, data: Interactions, previous: Blend | None = None) -> None:
        for name, component in self.components.items():
            earlier = previous.components.get(name) if previous is not None else None
            if isinstance(component, ALS) and isinstance(earlier, ALS):
                component.fit_from(data, earlier)
            else:
                component.fit(data)
        if self.weights is None:
            self.weights = {mode: dict.fromkeys(self.components, 1.0) for mode in MODES}

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError("Blend is not fitted yet: call fit() or load() first")

    def component_scores(
        self, users: np.ndarray, history: sp.csr_matrix, names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Each component's (or the named ones') scores for these users, scaled into [0, 1] per user."""
        self._check_fitted()
        wanted = self.components if names is None else {n: self.components[n] for n in names}
        return {name: normalize_rows(c.score(users, history)) for name, c in wanted.items()}

    def active(self, mode: str) -> list[str]:
        """The components that count in `mode`: weighted ones, and popularity (the fill)."""
        assert self.weights is not None
        weights = self.weights[mode]
        return [n for n in self.components if weights.get(n, 0.0) > 0 or n == "popularity"]

    def combine(self, parts: dict[str, np.ndarray], mode: str) -> np.ndarray:
        """Weighted sum of scaled component scores (the fill share of popularity included)."""
        assert self.weights is not None
        weights = self.weights[mode]
        total: np.ndarray | None = None
        for name, scores in parts.items():
            weight = weights.get(name, 0.0) + (FILL_WEIGHT if name == "popularity" else 0.0)
            if weight:
                total = scores * weight if total is None else total + scores * weight
        if total is None:
            return np.zeros_like(next(iter(parts.values())))
        return total

    def score(self, users: np.ndarray, history: sp.csr_matrix, mode: str = "discover") -> np.ndarray:
        """Dense blended scores over every item (small uses and tests; ranking uses `recommend`)."""
        self._check_fitted()
        _check_mode(mode)
        return self.combine(self.component_scores(users, history, self.active(mode)), mode)

    def gather(
        self,
        users: np.ndarray,
        history: sp.csr_matrix,
        names: list[str],
        *,
        per_source: int,
        exclude_seen: bool,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Candidates proposed by the named sources, and each one's score for them scaled into [0, 1].

        A source's scale is its best proposal for the user, so the scaled scores match
        `normalize_rows` over the items it may recommend.
        """
        self._check_fitted()
        proposals, products = self._propose(users, history, names, per_source, {exclude_seen})
        return self._candidates(users, history, proposals[exclude_seen], products)

    def _propose(
        self,
        users: np.ndarray,
        history: sp.csr_matrix,
        names: list[str],
        per_source: int,
        excludes: set[bool],
    ) -> tuple[dict[bool, dict[str, Proposal]], dict[str, sp.csr_matrix]]:
        """Each named source's proposals for each `exclude_seen` in `excludes`, and the sparse
        sources' score products (computed once, used to propose and to score)."""
        proposals: dict[bool, dict[str, Proposal]] = {exclude: {} for exclude in excludes}
        products: dict[str, sp.csr_matrix] = {}
        for name in names:
            component = self.components[name]
            found: dict[bool, Proposal]
            if isinstance(component, SparseScores):
                products[name] = component.sparse_scores(users, history)
                found = {
                    e: component.top_of(products[name], history, per_source, exclude_seen=e) for e in excludes
                }
            elif excludes == {True, False}:
                unseen, everything = component.recommend_both(users, history, per_source)
                found = {True: unseen, False: everything}
            else:
                found = {e: component.recommend(users, history, per_source, exclude_seen=e) for e in excludes}
            for exclude, proposal in found.items():
                proposals[exclude][name] = proposal
        return proposals, products

    def _candidates(
        self,
        users: np.ndarray,
        history: sp.csr_matrix,
        proposals: dict[str, Proposal],
        products: dict[str, sp.csr_matrix],
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        items = union_rows([found for found, _ in proposals.values()])
        parts = {}
        for name, (_, best) in proposals.items():
            top = best[:, :1].copy() if best.shape[1] else np.ones((len(users), 1), dtype=np.float32)
            top[~np.isfinite(top) | (top <= 0)] = 1.0
            if name in products:
                raw = sparse_at(products[name], items)
            else:
                raw = self.components[name].score_pairs(users, history, items)
            parts[name] = np.clip(raw / top, 0.0, 1.0).astype(np.float32)
        return items, parts

    def recommend(
        self,
        users: np.ndarray,
        history: sp.csr_matrix,
        n: int,
        *,
        exclude_seen: bool | None = None,
        mode: str = "discover",
    ) -> tuple[np.ndarray, np.ndarray]:
        items, scores, _ = self.rank(users, history, n, exclude_seen=exclude_seen, mode=mode)
        return items, scores

    def rank(
        self,
        users: np.ndarray,
        history: sp.csr_matrix,
        n: int,
        *,
        exclude_seen: bool | None = None,
        mode: str = "discover",
        per_source: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`recommend`, plus for each item the component that gave it the most weighted score
        (its index in `components`; -1 for padding). Each source proposes `per_source` items
        (default: `n`, at least `PER_SOURCE`)."""
        self._check_fitted()
        _check_mode(mode)
        exclude = exclude_seen if exclude_seen is not None else mode == "discover"
        names = self.active(mode)
        proposals = per_source or max(n, PER_SOURCE)
        items, parts = self.gather(users, history, names, per_source=proposals, exclude_seen=exclude)
        return self._ordered(items, parts, names, mode, n)

    def rank_modes(
        self, users: np.ndarray, history: sp.csr_matrix, n: int, *, per_source: int | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`rank` in every mode (seen items excluded in `discover` only), each source scoring
        the users once for all modes: what serving stores for every user."""
        self._check_fitted()
        wanted = {name for mode in MODES for name in self.active(mode)}
        names = [name for name in self.components if name in wanted]
        proposed = per_source or max(n, PER_SOURCE)
        proposals, products = self._propose(users, history, names, proposed, {True, False})
        out = {}
        for mode in MODES:
            found, active = proposals[mode == "discover"], self.active(mode)
            items, parts = self._candidates(users, history, {name: found[name] for name in active}, products)
            out[mode] = self._ordered(items, parts, active, mode, n)
        return out

    def _ordered(
        self, items: np.ndarray, parts: dict[str, np.ndarray], names: list[str], mode: str, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The top `n` candidates by blended score, and the component that gave each the most."""
        blended = self.combine(parts, mode)
        blended[items < 0] = -np.inf
        order, scores = top_k(blended, n)
        items, scores = ranked(np.take_along_axis(items, order, axis=1), scores)
        assert self.weights is not None
        weights = self.weights[mode]
        shares = np.stack(
            [
                np.take_along_axis(parts[name], order, axis=1) * max(weights.get(name, 0.0), FILL_WEIGHT)
                for name in names
            ]
        )
        every = list(self.components)
        sources = np.array([every.index(name) for name in names])[np.argmax(shares, axis=0)]
        sources[items < 0] = -1
        return items, scores, sources

    def similar_items(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """From the first component that finds similar items (collaborative before content)."""
        for name in ("item_knn", "als", "co_purchase", "content", "bpr"):
            component = self.components.get(name)
            if component is not None and component.supports_similar:
                return component.similar_items(items, n)
        raise NotImplementedError("no component of this blend finds similar items")

    def arrays(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        out = {"n_items": np.array([self.n_items_])}
        for name, component in self.components.items():
            out.update({f"{name}.{key}": value for key, value in component.arrays().items()})
        return out


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
