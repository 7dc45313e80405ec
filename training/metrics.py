"""Ranking metrics as plain functions over arrays (as implicit's evaluation does).

`hits` is a boolean array (users x k): whether the item ranked at each position is relevant.
`relevant` is each user's number of relevant items. Means are over users.
"""

from __future__ import annotations

import numpy as np

KS = (10, 20)


def _discounts(k: int) -> np.ndarray:
    discounts: np.ndarray = 1.0 / np.log2(np.arange(2, k + 2))
    return discounts


def ndcg_at_k(hits: np.ndarray, relevant: np.ndarray, k: int) -> float:
    discounts = _discounts(k)
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(relevant, k) - 1]
    return float(np.mean(dcg / ideal)) if len(hits) else 0.0


def recall_at_k(hits: np.ndarray, relevant: np.ndarray, k: int) -> float:
    return float(np.mean(hits[:, :k].sum(axis=1) / relevant)) if len(hits) else 0.0


def precision_at_k(hits: np.ndarray, relevant: np.ndarray, k: int) -> float:
    return float(np.mean(hits[:, :k].sum(axis=1) / k)) if len(hits) else 0.0


def map_at_k(hits: np.ndarray, relevant: np.ndarray, k: int) -> float:
    top = hits[:, :k].astype(np.float64)
    precision_at_each = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    average = (precision_at_each * top).sum(axis=1) / np.minimum(relevant, k)
    return float(np.mean(average)) if len(hits) else 0.0


def hit_rate_at_k(hits: np.ndarray, relevant: np.ndarray, k: int) -> float:
    return float(np.mean(hits[:, :k].any(axis=1))) if len(hits) else 0.0


def coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in anyone's list."""
    valid = recommended[recommended >= 0]
    return float(len(np.unique(valid)) / n_items) if n_items else 0.0


def all_metrics(
    hits: np.ndarray, relevant: np.ndarray, recommended: np.ndarray, n_items: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in KS:
        out[f"ndcg@{k}"] = ndcg_at_k(hits, relevant, k)
        out[f"recall@{k}"] = recall_at_k(hits, relevant, k)
        out[f"precision@{k}"] = precision_at_k(hits, relevant, k)
        out[f"map@{k}"] = map_at_k(hits, relevant, k)
        out[f"hit_rate@{k}"] = hit_rate_at_k(hits, relevant, k)
    out["coverage@20"] = coverage(recommended[:, :20], n_items)
    return out
