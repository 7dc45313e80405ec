"""The quality gate: is the candidate not worse than the served model on the same test events?

The served model is scored on the candidate's test split, restricted to events after the
served model's own data window (it must not have trained on what it is graded on). Where too
few such users remain, the recorded test metrics of both are compared instead, and the
decision says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models import ModelBundle
from training.dataset import Split, interactions
from training.evaluate import MODE_OF_VARIANT, VARIANTS, Ranker, evaluate, ranker_of
from training.events import EventLog
from training.pipeline import TrainConfig, TrainResult, truth_for

MIN_GATE_USERS = 20


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    candidate: float
    served: float
    basis: str  # "same test events" | "recorded metrics" | "no served model"
    tolerance: float

    def describe(self) -> str:
        if self.basis == "no served model":
            return "no model is served yet: publishing"
        verdict = "passes" if self.passed else "is worse than the served model"
        return (
            f"candidate {verdict}: NDCG@10 {self.candidate:.4f} vs served {self.served:.4f} "
            f"(tolerance {self.tolerance:.0%}, compared on {self.basis})"
        )


def headline(metrics: dict[str, dict[str, float]]) -> float:
    """The gate's one number: NDCG@10 averaged over the two variants."""
    return float(np.mean([metrics.get(v, {}).get("ndcg@10", 0.0) for v in VARIANTS]))


def _served_ranker(served: ModelBundle, log: EventLog, mode: str) -> Ranker:
    """Rankings from the served model, for the candidate's users, mapped into the candidate's item space."""
    served_item_row = {item: row for row, item in enumerate(served.item_ids.tolist())}
    served_user_row = {user: row for row, user in enumerate(served.user_ids.tolist())}
    item_map = np.array([served_item_row.get(i, -1) for i in log.item_ids.tolist()], dtype=np.int64)
    user_map = np.array([served_user_row.get(u, -1) for u in log.user_ids.tolist()], dtype=np.int64)
    back = np.full(len(served.item_ids) + 1, -1, dtype=np.int64)  # served row -> candidate row; -1 -> -1
    known = np.flatnonzero(item_map >= 0)
    back[item_map[known]] = known

    def rank_with(users: np.ndarray, rows: sp.csr_matrix, k: int, exclude_seen: bool) -> np.ndarray:
        coo = sp.csr_matrix(rows).tocoo()
        keep = item_map[coo.col] >= 0
        history = sp.csr_matrix(
            (coo.data[keep], (coo.row[keep], item_map[coo.col[keep]])),
            shape=(len(users), len(served.item_ids)),
        )
        served_users = user_map[users]
        served_users = np.where(served_users >= 0, served_users, len(served.user_ids) + np.arange(len(users)))
        items, _ = served.blend.recommend(served_users, history, k, exclude_seen=exclude_seen, mode=mode)
        mapped: np.ndarray = back[items]
        return mapped

    return rank_with


def decide(
    candidate: TrainResult,
    served: ModelBundle | None,
    log: EventLog,
    config: TrainConfig,
    *,
    tolerance: float = 0.05,
) -> GateDecision:
    """Compare on the same test events when possible; `passed` when the candidate is within tolerance."""
    cand_score = headline(candidate.metrics)
    if served is None:
        return GateDecision(True, cand_score, 0.0, "no served model", tolerance)
    outer = Split.temporal(log, config.test_share)
    served_end = float(served.metadata.get("data_window", {}).get("end", 0.0))
    unseen_test = outer.test.select(outer.test.timestamps > served_end)
    history = interactions(
        outer.train, config.weighting, n_users=len(log.user_ids), n_items=len(log.item_ids)
    ).matrix
    cand_metrics: dict[str, dict[str, float]] = {}
    served_metrics: dict[str, dict[str, float]] = {}
    enough = True
    for variant in VARIANTS:
        truth = truth_for(history, unseen_test, variant, config, config.max_eval_users)
        if len(truth.users) < MIN_GATE_USERS:
            enough = False
            break
        mode, novel = MODE_OF_VARIANT[variant], variant == "novel"
        # the candidate as fitted on the train split: it has not seen the test events
        evaluated = ranker_of(candidate.evaluated, mode=mode)
        cand_metrics[variant] = evaluate(evaluated, history, truth, exclude_seen=novel)
        served_metrics[variant] = evaluate(
            _served_ranker(served, log, mode), history, truth, exclude_seen=novel
        )
    if enough:
        cand_score, served_score, basis = headline(cand_metrics), headline(served_metrics), "same test events"
    else:
        served_score, basis = headline(served.metadata.get("metrics", {})), "recorded metrics"
    passed = cand_score >= served_score * (1.0 - tolerance)
    return GateDecision(passed, cand_score, served_score, basis, tolerance)
