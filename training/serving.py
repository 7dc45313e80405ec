"""What serving answers from, computed once per published model.

Storefronts ask on every page view, so the model's answer for each known user is ranked here, at
publish time, and saved with the artifact (memory-mapped by every serving process):

- `<mode>.items`, `<mode>.scores`, `<mode>.sources`: each user's top `CANDIDATES` item rows in
  the `discover` and `all` modes, with the component that contributed most to each;
- `component_names`: the names those source indexes refer to;
- `history.*`: the weighted user x item matrix the model was refit on (for fold-in and filters);
- `purchased.*`: who bought what (for "never recommend what was just bought" and buy-again).

Serving filters these candidates (stock, channel, category, rules) and falls back to the live
model only for users with events newer than the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from models import Blend
from models.base import sparse_to_arrays
from models.blend import MODES
from training.events import EVENT_CODES, EventLog

CANDIDATES = 100  # kept per user and mode, so that filters (stock, channel, category) leave enough
PER_SOURCE = 40  # proposed by each source before blending
BATCH = 1_024


def purchases(log: EventLog, n_users: int, n_items: int) -> sp.csr_matrix:
    """1 where the user bought the item."""
    bought = log.types == EVENT_CODES["purchase"]
    matrix = sp.csr_matrix(
        (np.ones(int(bought.sum()), dtype=np.float32), (log.users[bought], log.items[bought])),
        shape=(n_users, n_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def serving_arrays(
    blend: Blend,
    history: sp.csr_matrix,
    log: EventLog,
    *,
    candidates: int = CANDIDATES,
    progress: Callable[[float], None] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays above, for every user row of `history`."""
    n_users, n_items = history.shape
    width = min(candidates, n_items)
    out: dict[str, np.ndarray] = {
        "component_names": np.array(list(blend.components), dtype=str),
        **sparse_to_arrays("history", history),
        **sparse_to_arrays("purchased", purchases(log, n_users, n_items)),
    }
    for mode in MODES:
        out[f"{mode}.items"] = np.full((n_users, width), -1, dtype=np.int32)
        out[f"{mode}.scores"] = np.zeros((n_users, width), dtype=np.float32)
        out[f"{mode}.sources"] = np.full((n_users, width), -1, dtype=np.int8)
    for start in range(0, n_users, BATCH):
        users = np.arange(start, min(start + BATCH, n_users))
        ranked = blend.rank_modes(users, history[users], width, per_source=PER_SOURCE)
        for mode, (found, values, origin) in ranked.items():
            out[f"{mode}.items"][users, : found.shape[1]] = found
            out[f"{mode}.scores"][users, : found.shape[1]] = np.where(found >= 0, values, 0.0)
            out[f"{mode}.sources"][users, : found.shape[1]] = origin
        if progress is not None:
            progress(len(users) / n_users)
    return out
