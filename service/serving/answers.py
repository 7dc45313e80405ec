"""Recommendation answers: rank (precomputed, live or trending), filter, apply rules, fill.

Known users without new events are answered from the model's precomputed ranking; users with
events newer than the model are ranked live from their history plus those events (factors
folded in) and cached until their next event; unknown users get trending items, shaped by any
items given (a session). Every answer holds only catalog items in stock on the channel, none
the user is excluded from (bought, by default), none blocked by staff, pinned items first, and
is filled from trending when the model has too few.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import msgspec
import numpy as np
import scipy.sparse as sp

from models.blend import MODES
from service.serving.catalog_view import ItemInfo
from service.serving.fresh import FreshEvent
from service.serving.model import Ranked, ServingModel
from service.serving.state import ServingState

EXCLUDES = ("purchased", "interacted", "none")
LIVE_CANDIDATES = 100
LIVE_CACHE_USERS = 60_000  # (user, mode) rankings with fresh events, about 1 KB each
FRESH_BATCH = 256  # users the batch ranker takes at a time
FRESH_CANDIDATES = 50
RANK_NOW_BACKLOG = 64  # more users than this waiting for the batch ranker: do not rank on request
DEFAULT_WINDOW = "7d"


@dataclass
class Filters:
    channel: str | None = None
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    excluded: set[str] = field(default_factory=set)

    def allows(self, info: ItemInfo | None) -> bool:
        if info is None or info.item_id in self.excluded or not info.in_stock(self.channel):
            return False
        return self.narrowed(info)

    @property
    def narrows(self) -> bool:
        """Whether a category or price filter is set (beyond stock, channel and exclusions)."""
        return self.category is not None or self.min_price is not None or self.max_price is not None

    def narrowed(self, info: ItemInfo) -> bool:
        """The category and price filters alone."""
        if self.category is not None and info.category != self.category:
            return False
        if self.min_price is not None and (info.price is None or info.price < self.min_price):
            return False
        return self.max_price is None or (info.price is not None and info.price <= self.max_price)


class Pick(msgspec.Struct, frozen=True, gc=False):  # made for every candidate on the hot path
    item: ItemInfo
    score: float
    source: str


@dataclass(frozen=True)
class Answer:
    picks: list[Pick]
    strategy: str  # "model" | "fresh" | "session" | "cold_start" | "no_model" | "similar" | …
    model_version: str | None


class Answers:
    def __init__(self, state: ServingState) -> None:
        self.state = state
        state.rank_pending = self.rank_pending
        self._live: OrderedDict[tuple[str, str, str, int], Ranked] = OrderedDict()

    # -- users ---------------------------------------------------------------------------------

    def for_user(self, user_id: str, n: int, filters: Filters, exclude: str = "purchased") -> Answer:
        model = self.state.model
        fresh = self.state.fresh.for_user(user_id)
        mode = "discover" if exclude == "interacted" else "all"
        if model is None:
            filters.excluded |= _fresh_exclusions(fresh, exclude)
            return self._finish([], n, filters, "no_model")
        row = model.user_row.get(user_id)
        filters.excluded |= self._exclusions(model, row, fresh, exclude)
        if fresh:
            ranked, strategy = self._fresh_ranking(model, user_id, row, fresh, mode)
        elif row is not None and model.precomputed:
            ranked, strategy = model.candidates(row, mode), "model"
        elif row is not None:
            ranked, strategy = model.rank_live(model.history_row(row), mode, LIVE_CANDIDATES), "model"
        else:
            return self._finish([], n, filters, "cold_start")
        return self._finish(self._picks(model, ranked, filters, n), n, filters, strategy)

    def for_session(self, events: list[tuple[str, str]], n: int, filters: Filters, exclude: str) -> Answer:
        """An anonymous visitor: rank from the items (and event types) of this session."""
        model = self.state.model
        if exclude != "none":
            filters.excluded |= {
                item for item, event in events if exclude == "interacted" or event == "purchase"
            }
        if model is None or not events:
            return self._finish([], n, filters, "no_model" if model is None else "cold_start")
        history = _history(model, None, [FreshEvent(0, item, event, 0.0) for item, event in events])
        if history.nnz == 0:  # none of the items is known to the model
            return self._finish([], n, filters, "cold_start")
        mode = "discover" if exclude == "interacted" else "all"
        ranked = model.rank_live(history, mode, LIVE_CANDIDATES)
        return self._finish(self._picks(model, ranked, filters, n), n, filters, "session")

    def buy_again(self, user_id: str, n: int, filters: Filters) -> Answer:
        """The user's purchases, ranked by how likely a repeat is now (recency, frequency)."""
        model = self.state.model
        fresh = [e for e in self.state.fresh.for_user(user_id) if e.event == "purchase"]
        scores: dict[str, float] = {}
        if model is not None:
            row = model.user_row.get(user_id)
            strength = model.buy_again_scores(row)
            if row is not None:
                for item in model.purchased[row].indices.tolist():
                    scores[model.item_ids[item]] = strength.get(item, 0.0)
        top = max(scores.values(), default=0.0)
        for event in fresh:  # a purchase after the model: as strong as the strongest, and fresher
            scores[event.item_id] = max(scores.get(event.item_id, 0.0), top) + 1e-3
        ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
        picks = self._from_ids(((item, round(score, 6), "buy_again") for item, score in ranked), filters)
        return Answer(picks[:n], "buy_again", self.state.version)

    # -- items ---------------------------------------------------------------------------------

    def similar(self, item_id: str, n: int, filters: Filters, components: tuple[str, ...]) -> Answer | None:
        """Items like this one (None when the item is unknown to the catalog and the model)."""
        model = self.state.model
        info = self.state.catalog.get(item_id)
        row = model.item_row.get(item_id) if model else None
        if info is None and row is None:
            return None
        filters.excluded.add(item_id)
        if model is None or row is None:  # a new item: what is trending in its category
            if info is not None and info.category and filters.category is None:
                filters.category = info.category
            return self._finish([], n, filters, "trending")
        ranked = model.similar(row, n * 3 + 10, components)
        picks = self._picks(model, ranked, filters)
        if len(picks) < n and info is not None and info.category and filters.category is None:
            filters.category = info.category  # fill with what is popular in the same category
        return self._finish(picks, n, filters, "similar")

    def trending(self, n: int, filters: Filters, window: str) -> Answer:
        return self._finish([], n, filters, "trending", window)

    # -- internals -----------------------------------------------------------------------------

    def _exclusions(
        self, model: ServingModel, row: int | None, fresh: list[FreshEvent], exclude: str
    ) -> set[str]:
        out = _fresh_exclusions(fresh, exclude)
        if row is None or exclude == "none":
            return out
        matrix = model.purchased if exclude == "purchased" else model.history
        columns = matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]  # no scipy row object
        out.update(model.item_ids[i] for i in columns.tolist())
        return out

    def _fresh_ranking(
        self, model: ServingModel, user_id: str, row: int | None, fresh: list[FreshEvent], mode: str
    ) -> tuple[Ranked, str]:
        """Ranked with the fresh events: from the batch ranker's cache, else now, unless a burst
        of fresh users is queued; then the precomputed ranking answers (the exclusions already
        hold what was just bought) until the batch ranker reaches this user, within seconds."""
        cached = self._live.get((model.version, user_id, mode, len(fresh)))
        if cached is not None:
            return cached, "fresh"
        if row is not None and model.precomputed and len(self.state.fresh.pending) > RANK_NOW_BACKLOG:
            return model.candidates(row, mode), "model"
        return self._live_ranking(model, user_id, row, fresh, mode), "fresh"

    async def rank_pending(self, batch: int = FRESH_BATCH) -> int:
        """Rank a batch of users with fresh events, in both modes, off the event loop; how many."""
        model = self.state.model
        fresh = self.state.fresh
        if model is None:
            fresh.pending.clear()
            return 0
        users = fresh.take_pending(batch)
        if not users:
            return 0
        jobs = [(user, list(fresh.for_user(user))) for user in users]

        def rank() -> dict[str, list[Ranked]]:
            histories = sp.vstack(
                [_history(model, model.user_row.get(u), ev) for u, ev in jobs], format="csr"
            )
            return {mode: model.rank_many(histories, mode, FRESH_CANDIDATES) for mode in MODES}

        ranked = await asyncio.to_thread(rank)
        for mode, found in ranked.items():
            for (user, events), one in zip(jobs, found, strict=True):
                self._remember((model.version, user, mode, len(events)), one)
        return len(users)

    def _remember(self, key: tuple[str, str, str, int], ranked: Ranked) -> None:
        self._live[key] = ranked
        self._live.move_to_end(key)
        if len(self._live) > LIVE_CACHE_USERS:
            self._live.popitem(last=False)

    def _live_ranking(
        self, model: ServingModel, user_id: str, row: int | None, fresh: list[FreshEvent], mode: str
    ) -> Ranked:
        key = (model.version, user_id, mode, len(fresh))
        cached = self._live.get(key)
        if cached is not None:
            self._live.move_to_end(key)
            return cached
        ranked = model.rank_live(_history(model, row, fresh), mode, LIVE_CANDIDATES)
        self._remember(key, ranked)
        return ranked

    def _picks(self, model: ServingModel, ranked: Ranked, filters: Filters, n: int = 1_000) -> list[Pick]:
        """The ranked items that pass the filters, at most as many as `_finish` can use."""
        item_ids, labels = model.item_ids, ranked.labels
        limit = n + len(self.state.rules.pinned(filters.channel))  # pinned items may repeat picks
        picks: list[Pick] = []
        start, size = 0, len(ranked.rows)
        while start < size and len(picks) < limit:  # a first slice is usually enough
            stop = size if start else min(size, 2 * limit + 8)
            rows, codes = ranked.rows[start:stop].tolist(), ranked.codes[start:stop].tolist()
            scores = ranked.scores[start:stop].astype(np.float64).round(6).tolist()
            candidates = (
                (item_ids[row], score, labels[code])
                for row, score, code in zip(rows, scores, codes, strict=True)
            )
            picks += self._from_ids(candidates, filters, limit - len(picks))
            start = stop
        return picks

    def _from_ids(
        self, ranked: Iterable[tuple[str, float, str]], filters: Filters, limit: int = 1_000
    ) -> list[Pick]:
        blocked = self.state.rules.blocked(filters.channel)
        catalog, excluded, channel = self.state.catalog.items, filters.excluded, filters.channel
        narrowed = filters.narrowed if filters.narrows else None
        picks: list[Pick] = []
        for item_id, score, source in ranked:  # Filters.allows, inlined: this loop is the hot path
            if item_id in blocked or item_id in excluded:
                continue
            info = catalog.get(item_id)
            if (
                info is None
                or not info.sellable
                or (channel and not info.channel_availability.get(channel, True))
            ):
                continue
            if narrowed is None or narrowed(info):
                picks.append(Pick(info, score, source))
                if len(picks) >= limit:
                    break
        return picks

    def _trending_ids(self, window: str, channel: str | None) -> Iterator[tuple[str, float, str]]:
        for item_id, score in self.state.trending.ranking(window, channel):
            yield item_id, round(score, 6), "trending"
        model = self.state.model
        if model is not None:  # the model's time-decayed popularity, when live events run short
            for row in model.popular.tolist():
                yield model.item_ids[row], 0.0, "trending"

    def _finish(
        self, picks: list[Pick], n: int, filters: Filters, strategy: str, window: str = DEFAULT_WINDOW
    ) -> Answer:
        """Pinned items first, then the picks, then trending items until there are `n`."""
        pinned_ids = self.state.rules.pinned(filters.channel)
        if not pinned_ids and len(picks) >= n:  # the common case: ranked picks are distinct already
            return Answer(picks[:n], strategy, self.state.version)
        chosen: list[Pick] = []
        taken: set[str] = set()

        def take(candidates: Iterable[Pick]) -> None:
            for pick in candidates:
                if len(chosen) >= n:
                    return
                if pick.item.item_id not in taken:
                    taken.add(pick.item.item_id)
                    chosen.append(pick)

        pinned = ((item, 0.0, "pinned") for item in pinned_ids)
        take(self._from_ids(pinned, filters, limit=n))
        take(picks)
        if len(chosen) < n:
            filters.excluded |= taken
            take(self._from_ids(self._trending_ids(window, filters.channel), filters, limit=n - len(chosen)))
        return Answer(chosen, strategy, self.state.version)


def _fresh_exclusions(fresh: list[FreshEvent], exclude: str) -> set[str]:
    if exclude == "none":
        return set()
    return {e.item_id for e in fresh if exclude == "interacted" or e.event == "purchase"}


def _history(model: ServingModel, row: int | None, fresh: list[FreshEvent]) -> sp.csr_matrix:
    """The user's weighted history as the model knows it, plus events it has not seen."""
    base = model.history_row(row)
    columns = [model.item_row.get(e.item_id, -1) for e in fresh]
    weights = [model.event_weights.get(e.event, 0.0) for e in fresh]
    known = [(c, w) for c, w in zip(columns, weights, strict=True) if c >= 0 and w > 0]
    if not known:
        return base
    cols, values = zip(*known, strict=True)
    extra = sp.csr_matrix(
        (np.asarray(values, dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), np.asarray(cols))),
        shape=(1, model.n_items),
    )
    return sp.csr_matrix(base + extra)
