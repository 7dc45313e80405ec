"""Learning the blend's weights on the validation split, one set per mode.

Each source proposes its best `per_source` items per user; every source's scaled score is
gathered for the union (`Blend.gather`, as when serving), and coordinate ascent over a grid of
weights maximizes NDCG@10 of the blended ranking (seen items filtered in `discover`, kept in `all`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models import Blend
from models.base import sparse_at, top_k
from training.evaluate import Relevance, batch_size
from training.metrics import ndcg_at_k

GRID = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
CLEARLY_BETTER = 0.02


class _Candidates:
    """Per user: candidate items, each source's scaled score for them, and which are relevant."""

    def __init__(
        self, blend: Blend, history: sp.csr_matrix, truth: Relevance, *, exclude_seen: bool, per_source: int
    ) -> None:
        self.names = list(blend.components)
        item_rows, score_rows, hit_rows = [], [], []
        batch = batch_size(history.shape[1])
        for start in range(0, len(truth.users), batch):
            users = truth.users[start : start + batch]
            items, parts = blend.gather(
                users, history[users], self.names, per_source=per_source, exclude_seen=exclude_seen
            )
            item_rows.append(items)
            score_rows.append(np.stack([parts[name] for name in self.names]))
            hit_rows.append(sparse_at(truth.matrix[users], items) > 0)
        width = max(items.shape[1] for items in item_rows)
        self.scores = np.zeros((len(self.names), len(truth.users), width), dtype=np.float32)
        self.hits = np.zeros((len(truth.users), width), dtype=bool)
        self.valid = np.zeros((len(truth.users), width), dtype=bool)
        row = 0
        for items, scores, hits in zip(item_rows, score_rows, hit_rows, strict=True):
            rows = slice(row, row + len(items))
            self.scores[:, rows, : items.shape[1]] = scores
            self.hits[rows, : items.shape[1]] = hits
            self.valid[rows, : items.shape[1]] = items >= 0
            row += len(items)
        self.relevant = truth.counts

    def ndcg(self, weights: np.ndarray) -> float:
        sources, users, width = self.scores.shape
        blended = (weights.astype(np.float32) @ self.scores.reshape(sources, -1)).reshape(users, width)
        blended[~self.valid] = -np.inf
        top, values = top_k(blended, 10)
        hits = np.take_along_axis(self.hits, top, axis=1) & np.isfinite(values)
        return ndcg_at_k(hits, self.relevant, 10)


def learn_weights(
    blend: Blend,
    history: sp.csr_matrix,
    truth: Relevance,
    *,
    exclude_seen: bool,
    per_source: int = 20,
    passes: int = 2,
) -> tuple[dict[str, float], float]:
    """Weights per component maximizing validation NDCG@10, and that NDCG."""
    names = list(blend.components)
    if not len(truth.users):
        return dict.fromkeys(names, 1.0), 0.0
    candidates = _Candidates(blend, history, truth, exclude_seen=exclude_seen, per_source=per_source)
    # Coordinate ascent from an even mix, and from the best single source. The mix is kept
    # unless the other is clearly better on validation: mixes generalize better to the test
    # period than a validation-tuned single source (seen on ML-100k and Complete Journey).
    singles = [candidates.ndcg(np.eye(len(names))[index]) for index in range(len(names))]
    weights, best = _ascend(candidates, np.ones(len(names)), passes)
    single_weights, single_best = _ascend(candidates, np.eye(len(names))[int(np.argmax(singles))], passes)
    if single_best > best * (1.0 + CLEARLY_BETTER):
        weights, best = single_weights, single_best
    return {name: round(float(w), 4) for name, w in zip(names, weights, strict=True)}, best


def _ascend(candidates: _Candidates, start: np.ndarray, passes: int) -> tuple[np.ndarray, float]:
    weights, best = start.astype(np.float64), candidates.ndcg(start)
    for _ in range(passes):
        improved = False
        for index in range(len(weights)):
            for value in GRID:
                trial = weights.copy()
                trial[index] = value
                if not trial.any():
                    continue
                score = candidates.ndcg(trial)
                if score > best + 1e-9:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return weights, best
