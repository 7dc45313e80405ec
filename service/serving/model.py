"""The published model as serving sees it: id maps, precomputed candidates and the live blend.

Built once per model version from the memory-mapped artifact (worker processes share the
pages); requests only read it, and a new version replaces the whole object at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import scipy.sparse as sp

from models import ModelBundle
from models.base import sparse_from_arrays
from models.blend import MODES
from training.dataset import DEFAULT_EVENT_WEIGHTS

# What each component is called in responses.
SOURCE_LABELS = {
    "als": "als",
    "bpr": "als",
    "item_knn": "similar",
    "co_purchase": "bought_together",
    "content": "content",
    "popularity": "trending",
}
LIVE_PER_SOURCE = 40  # items each source proposes when a user is ranked live (fresh events)


def source_label(component: str) -> str:
    if component.startswith("trending"):
        return "trending"
    if component.startswith("buy_again"):
        return "buy_again"
    return SOURCE_LABELS.get(component, component)


class Ranked(msgspec.Struct, frozen=True, gc=False):
    """Item rows (distinct), scores and where each came from (`labels[codes[k]]`), best first."""

    rows: np.ndarray
    scores: np.ndarray
    codes: np.ndarray
    labels: Sequence[str]

    @property
    def sources(self) -> list[str]:
        return [self.labels[code] for code in self.codes.tolist()]


class ServingModel:
    def __init__(self, version: str, bundle: ModelBundle) -> None:
        self.version = version
        self.bundle = bundle
        self.blend = bundle.blend
        self.item_ids: list[str] = bundle.item_ids.tolist()
        self.item_row = {item: row for row, item in enumerate(self.item_ids)}
        self.user_row = {user: row for row, user in enumerate(bundle.user_ids.tolist())}
        self.n_users, self.n_items = len(self.user_row), len(self.item_ids)
        parameters: dict[str, Any] = bundle.metadata.get("parameters", {})
        self.event_weights: dict[str, float] = parameters.get("event_weights") or dict(DEFAULT_EVENT_WEIGHTS)
        self.window_end = float(bundle.metadata.get("data_window", {}).get("end", 0.0))
        arrays = bundle.serving
        self.precomputed = all(f"{mode}.items" in arrays for mode in MODES)
        if self.precomputed:
            self.history = sparse_from_arrays("history", arrays)
            self.purchased = sparse_from_arrays("purchased", arrays)
            names = arrays["component_names"].tolist()
        else:  # an artifact without serving arrays: everyone is ranked live, from no history
            self.history = sp.csr_matrix((self.n_users, self.n_items), dtype=np.float32)
            self.purchased = self.history
            names = list(self.blend.components)
        self.labels = [source_label(name) for name in names]
        # plain ndarray views of the memory-mapped rows (indexing a np.memmap runs Python code),
        # and how many leading slots of each row hold an item (padding, -1, is at the end)
        self._candidates = {
            mode: tuple(np.asarray(arrays[f"{mode}.{part}"]) for part in ("items", "scores", "sources"))
            for mode in MODES
            if self.precomputed
        }
        self._filled = {mode: _leading_items(parts[0]) for mode, parts in self._candidates.items()}
        self.popular = self._popularity_order()

    def _popularity_order(self) -> np.ndarray:
        for name in ("trending_7d", "trending_3d", "trending_30d", "popularity"):
            component: Any = self.blend.components.get(name)
            if component is not None:
                order: np.ndarray = np.asarray(component.order_)
                return order
        return np.arange(self.n_items)

    def candidates(self, user: int, mode: str) -> Ranked:
        """The precomputed ranking of a known user (no fresh events)."""
        items, scores, sources = self._candidates[mode]
        k = self._filled[mode][user]
        return Ranked(items[user, :k], scores[user, :k], sources[user, :k], self.labels)

    def history_row(self, user: int | None) -> sp.csr_matrix:
        if user is None:
            return sp.csr_matrix((1, self.n_items), dtype=np.float32)
        return sp.csr_matrix(self.history[user])

    def rank_live(self, history: sp.csr_matrix, mode: str, n: int) -> Ranked:
        """Rank from a history the model has not seen (fresh events, a session, a new user).

        The user is treated as new: factors are folded in from `history`, neighbours and
        "buy again" read it directly.
        """
        unseen = np.array([self.n_users])
        rows, scores, sources = self.blend.rank(unseen, history, n, mode=mode, per_source=LIVE_PER_SOURCE)
        keep = rows[0] >= 0
        return Ranked(rows[0][keep], scores[0][keep], sources[0][keep], self._component_labels())

    def rank_many(self, histories: sp.csr_matrix, mode: str, n: int) -> list[Ranked]:
        """`rank_live` for many histories at once: per user, a batch costs a small share of one call."""
        unseen = np.full(histories.shape[0], self.n_users)
        rows, scores, sources = self.blend.rank(unseen, histories, n, mode=mode, per_source=LIVE_PER_SOURCE)
        labels = self._component_labels()
        return [
            Ranked(r[r >= 0], s[r >= 0], o[r >= 0], labels)
            for r, s, o in zip(rows, scores, sources, strict=True)
        ]

    def _component_labels(self) -> list[str]:
        """Labels by the blend's component index (the codes `blend.rank` returns)."""
        return [source_label(name) for name in self.blend.components]

    def similar(self, item: int, n: int, components: tuple[str, ...]) -> Ranked:
        """Items like `item` from the first of `components` that knows it, filled from the next."""
        rows: list[int] = []
        scores: list[float] = []
        sources: list[str] = []
        for name in components:
            component: Any = self.blend.components.get(name)
            if component is None or not component.supports_similar:
                continue
            found, values = component.similar_items(np.array([item]), n)
            for row, value in zip(found[0].tolist(), values[0].tolist(), strict=True):
                if np.isfinite(value) and value > 0 and row not in rows and row != item:
                    rows.append(row)
                    scores.append(float(value))
                    sources.append(source_label(name))
            if len(rows) >= n:
                break
        labels = sorted(set(sources))
        codes = np.array([labels.index(source) for source in sources], dtype=np.int64)
        return Ranked(np.array(rows, dtype=np.int64), np.array(scores, dtype=np.float32), codes, labels)

    def buy_again_scores(self, user: int | None) -> dict[int, float]:
        """The user's own items by the strongest "buy again" component (recency and frequency)."""
        if user is None:
            return {}
        weights = (self.blend.weights or {}).get("all", {})
        names = [n for n in self.blend.components if n.startswith("buy_again")]
        if not names:
            return {}
        best: Any = self.blend.components[max(names, key=lambda n: weights.get(n, 0.0))]
        row = best.user_items_[user]
        return dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))


def _leading_items(items: np.ndarray) -> list[int]:
    """Per row, how many slots hold an item; rows with a gap before their padding are cut there."""
    present = items >= 0
    counts: list[int] = np.where(present.all(axis=1), items.shape[1], np.argmin(present, axis=1)).tolist()
    return counts
