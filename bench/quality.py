"""Recommendation quality on real data: shopcast's pipeline beside the usual baselines.

    python bench/quality.py [--tasks taobao/purchases,...] [--tune SECONDS] [--json FILE]

Same time split, same users, same metrics for everyone. Baselines get their hyperparameters
chosen on the validation split (the end of train), like ours: MostPopular, time-decayed
popularity, "buy again" alone (with event weights), item-item cosine, EASE (implemented here
as a reference, on the most popular items when the catalog is large) and implicit's ALS with
its library defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import TASKS, Task

from models import ALS, BuyAgain, ItemKNN, Popularity, Recommender
from models.base import Interactions
from training.dataset import Split, Weighting, interactions
from training.evaluate import VARIANTS, evaluate, ranker_of, relevance
from training.pipeline import TrainConfig, train
from training.tuning import tune

EASE_MAX_ITEMS = 8_000


class EASE(Recommender):
    """Steck's EASE^R: a closed-form item-item model (reference baseline, not shipped)."""

    name = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = EASE_MAX_ITEMS) -> None:
        self.l2 = l2
        self.max_items = max_items

    def _fit(self, data: Interactions) -> None:
        binary = data.matrix.copy()
        binary.data[:] = 1.0
        counts = np.asarray(binary.sum(axis=0)).ravel()
        self.items_ = np.sort(np.argsort(-counts, kind="stable")[: self.max_items])
        x = binary[:, self.items_]
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights_ = weights.astype(np.float32)

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        binary = history.copy()
        binary.data[:] = 1.0
        out = np.zeros((history.shape[0], self.n_items_), dtype=np.float32)
        out[:, self.items_] = binary[:, self.items_] @ self.weights_
        return out


def implicit_defaults() -> Recommender:
    return ALS(factors=100, regularization=0.01, alpha=1.0, iterations=15, random_state=42)


BASELINES: dict[str, list[Callable[[], Recommender]]] = {
    "most_popular": [Popularity],
    "decayed_popularity": [partial(Popularity, half_life_days=h) for h in (1.0, 3.0, 7.0, 30.0)],
    "buy_again": [partial(BuyAgain, half_life_days=h) for h in (3.0, 14.0, 60.0, None)],
    "item_cosine": [partial(ItemKNN, neighbours=k, method="cosine") for k in (50, 200)],
    "ease": [partial(EASE, l2=l2) for l2 in (50.0, 500.0, 2000.0)],
    "als_implicit_defaults": [implicit_defaults],
}


def ndcg(
    model: Recommender, history: sp.csr_matrix, test: Any, target: Any, variant: str
) -> tuple[float, dict[str, float]]:
    truth = relevance(history, test, variant=variant, target=target, max_users=5_000, seed=42)
    metrics = evaluate(ranker_of(model), history, truth, exclude_seen=variant == "novel")
    return metrics.get("ndcg@10", 0.0), metrics


def run_baselines(task: Task, weighting: Weighting) -> dict[str, dict[str, dict[str, float]]]:
    """For each baseline and variant: choose among its settings on validation, report on test."""
    log = task.load()
    outer = Split.temporal(log)
    inner = Split.temporal(outer.train)
    n_users, n_items = len(log.user_ids), len(log.item_ids)
    fit_a = interactions(inner.train, weighting, n_users=n_users, n_items=n_items)
    fit_train = interactions(outer.train, weighting, n_users=n_users, n_items=n_items)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, candidates in BASELINES.items():
        results[name] = {}
        fitted_a = [make().fit(fit_a) for make in candidates]
        for variant in VARIANTS:
            scores = [ndcg(m, fit_a.matrix, inner.test, task.target, variant)[0] for m in fitted_a]
            best = candidates[int(np.argmax(scores))]().fit(fit_train)
            results[name][variant] = ndcg(best, fit_train.matrix, outer.test, task.target, variant)[1]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(t.name for t in TASKS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tune", type=float, default=0.0, help="also tune, with this many seconds per task")
    args = parser.parse_args()
    wanted = args.tasks.split(",")
    rows: list[tuple[str, str, str, dict[str, float]]] = []
    for task in TASKS:
        if task.name not in wanted:
            continue
        started = time.perf_counter()
        config = TrainConfig(target=task.target, seed=42)
        log = task.load()
        ours = train(log, config, refit=False)
        for variant in VARIANTS:
            rows.append((task.name, variant, "shopcast (default)", ours.metrics[variant]))
        if args.tune:
            best, trials = tune(log, config, budget_seconds=args.tune)
            tuned = train(log, best, refit=False)
            print(f"{task.name}: {len(trials)} tuning trials", file=sys.stderr)
            for variant in VARIANTS:
                rows.append((task.name, variant, "shopcast (tuned)", tuned.metrics[variant]))
        for name, variants in run_baselines(task, config.weighting).items():
            for variant, metrics in variants.items():
                rows.append((task.name, variant, name, metrics))
        print(f"{task.name}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    print(
        f"\n{'task':<28} {'variant':<7} {'model':<22} {'ndcg@10':>8} {'recall@20':>9} "
        f"{'hit@10':>7} {'cov@20':>7}"
    )
    for task_name in dict.fromkeys(r[0] for r in rows):
        for variant in VARIANTS:
            group = [r for r in rows if r[0] == task_name and r[1] == variant]
            best_baseline = max(r[3].get("ndcg@10", 0.0) for r in group if not r[2].startswith("shopcast"))
            for _, _, model, m in sorted(group, key=lambda r: -r[3].get("ndcg@10", 0.0)):
                mark = ""
                if model.startswith("shopcast"):
                    mark = (
                        "  beats every baseline"
                        if m["ndcg@10"] > best_baseline
                        else "  BELOW the best baseline"
                    )
                print(
                    f"{task_name:<28} {variant:<7} {model:<22} {m.get('ndcg@10', 0):>8.4f} "
                    f"{m.get('recall@20', 0):>9.4f} {m.get('hit_rate@10', 0):>7.4f} "
                    f"{m.get('coverage@20', 0):>7.4f}{mark}"
                )
    if args.json:
        args.json.write_text(
            json.dumps([{"task": t, "variant": v, "model": m, "metrics": x} for t, v, m, x in rows])
        )


if __name__ == "__main__":
    main()
