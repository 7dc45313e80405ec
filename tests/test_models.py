"""One contract every model meets (implicit's recommender_base_test, as a parametrized suite)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models import (
    ALS,
    BPR,
    ArtifactError,
    Blend,
    BuyAgain,
    ContentSimilarity,
    CoPurchase,
    Interactions,
    ItemKNN,
    ModelBundle,
    NotFittedError,
    Popularity,
    Recommender,
    load,
    save,
)
from models.base import sparse_at, top_k

N_USERS, N_ITEMS = 60, 30
WORDS = ["tea", "coffee", "mug", "kettle", "green", "black", "filter", "cup", "honey", "lemon"]


def synthetic(seed: int = 0) -> Interactions:
    """Two taste groups (even and odd items), sessions of 3 events, a week of timestamps."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(N_USERS):
        pool = np.arange(user % 2, N_ITEMS, 2)
        chosen = rng.choice(pool, size=8, replace=True)
        users += [user] * len(chosen)
        items += chosen.tolist()
    user_rows = np.array(users, dtype=np.int32)
    item_rows = np.array(items, dtype=np.int32)
    timestamps = 1_700_000_000 + np.sort(rng.uniform(0, 7 * 86_400, len(users)))
    weights = np.ones(len(users), dtype=np.float32)
    matrix = sp.csr_matrix((weights, (user_rows, item_rows)), shape=(N_USERS, N_ITEMS), dtype=np.float32)
    matrix.sum_duplicates()
    texts = tuple(f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} group{i % 2}" for i in range(N_ITEMS))
    return Interactions(
        matrix=matrix,
        user_rows=user_rows,
        item_rows=item_rows,
        timestamps=timestamps,
        weights=weights,
        sessions=np.arange(len(users), dtype=np.int64) // 3,
        now=float(timestamps.max()),
        item_texts=texts,
    )


def make_models() -> dict[str, Recommender]:
    return {
        "als": ALS(factors=8, iterations=5, random_state=1, num_threads=1),
        "bpr": BPR(factors=8, iterations=20, random_state=1, num_threads=1),
        "item_knn_bm25": ItemKNN(neighbours=10, method="bm25"),
        "item_knn_cosine": ItemKNN(neighbours=10, method="cosine"),
        "co_purchase": CoPurchase(neighbours=10),
        "popularity": Popularity(),
        "trending": Popularity(half_life_days=1.0),
        "buy_again": BuyAgain(half_life_days=3.0),
        "content": ContentSimilarity(),
    }


MODEL_NAMES = list(make_models())
USERS = np.arange(10)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return synthetic()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_use_before_fit_says_so(name: str, data: Interactions) -> None:
    model = make_models()[name]
    with pytest.raises(NotFittedError, match="not fitted"):
        model.score(USERS, data.matrix[USERS])
    with pytest.raises(NotFittedError):
        model.arrays()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_score_and_recommend(name: str, data: Interactions) -> None:
    model = make_models()[name]
    assert model.fit(data) is model
    history = data.matrix[USERS]
    scores = model.score(USERS, history)
    assert scores.shape == (len(USERS), N_ITEMS)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()
    items, item_scores = model.recommend(USERS, history, 5)
    assert items.shape == item_scores.shape == (len(USERS), 5)
    found = items >= 0
    assert (found == np.isfinite(item_scores)).all(), "padding is item -1 with score -inf"
    assert (np.diff(found.astype(int), axis=1) <= 0).all(), "padding only at the end"
    ranked_scores = np.where(found, item_scores, np.float32(-1e30))
    assert (np.diff(ranked_scores, axis=1) <= 0).all(), "best first"
    for row in range(len(USERS)):
        assert not set(items[row][found[row]]) & set(history[row].indices), "seen items excluded"
        assert len(set(items[row][found[row]])) == found[row].sum(), "no item twice"
    repeats, _ = model.recommend(USERS, history, N_ITEMS, exclude_seen=False)
    assert repeats.shape == (len(USERS), N_ITEMS)
    # the top of `recommend` is the top of the dense scores (ties aside)
    best = scores.max(axis=1)
    top_scores = model.score_pairs(USERS, history, repeats[:, :1])[:, 0]
    np.testing.assert_allclose(top_scores, best, rtol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_learned_state_round_trips_through_an_artifact(name: str, data: Interactions, tmp_path: Path) -> None:
    model = make_models()[name].fit(data)
    blend = Blend({name: model}, weights={"discover": {name: 1.0}, "all": {name: 1.0}})
    blend.n_items_ = data.n_items  # components already fitted
    user_ids = np.array([f"u{i}" for i in range(N_USERS)])
    bundle = ModelBundle(blend, user_ids, np.array([f"i{i}" for i in range(N_ITEMS)]))
    save(bundle, tmp_path / "model")
    loaded = load(tmp_path / "model")
    history = data.matrix[USERS]
    np.testing.assert_allclose(
        loaded.blend.components[name].score(USERS, history), model.score(USERS, history)
    )
    assert loaded.item_ids[3] == "i3"
    assert loaded.user_ids[59] == "u59"
    for array in (tmp_path / "model" / "arrays").iterdir():
        np.load(array, allow_pickle=False)  # data only: loads without pickle


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if make_models()[n].supports_similar])
def test_similar_items_exclude_the_item_itself(name: str, data: Interactions) -> None:
    model = make_models()[name].fit(data)
    items = np.arange(6)
    similar, scores = model.similar_items(items, 4)
    assert similar.shape == (6, 4)
    for row, item in enumerate(items):
        assert item not in similar[row][np.isfinite(scores[row])]


def test_collaborative_models_learn_the_taste_groups(data: Interactions) -> None:
    for name in ("als", "item_knn_bm25", "item_knn_cosine"):
        model = make_models()[name].fit(data)
        items, _ = model.recommend(USERS, data.matrix[USERS], 3)
        same_group = (items % 2) == (USERS[:, None] % 2)
        assert same_group.mean() > 0.9, name


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_same_seed_same_model(name: str, data: Interactions) -> None:
    first = make_models()[name].fit(data).score(USERS, data.matrix[USERS])
    second = make_models()[name].fit(data).score(USERS, data.matrix[USERS])
    np.testing.assert_allclose(first, second, rtol=1e-5)


def test_als_folds_in_a_user_it_has_not_seen(data: Interactions) -> None:
    model = ALS(factors=8, iterations=10, random_state=3, num_threads=1).fit(data)
    history = data.matrix[[4]]
    as_known = model.score(np.array([4]), history)
    as_new = model.score(np.array([N_USERS + 100]), history)
    assert np.corrcoef(as_known.ravel(), as_new.ravel())[0, 1] > 0.9


def test_buy_again_ranks_recent_and_frequent_items_first() -> None:
    # user 0: item 1 three times long ago, item 2 once yesterday, item 3 once today
    now = 1_700_000_000.0
    data = Interactions(
        matrix=sp.csr_matrix(([3.0, 1.0, 1.0], ([0, 0, 0], [1, 2, 3])), shape=(1, 5), dtype=np.float32),
        user_rows=np.array([0, 0, 0, 0, 0], dtype=np.int32),
        item_rows=np.array([1, 1, 1, 2, 3], dtype=np.int32),
        timestamps=np.array([now - 60 * 86_400] * 3 + [now - 86_400, now]),
        weights=np.ones(5, dtype=np.float32),
        now=now,
    )
    model = BuyAgain(half_life_days=7.0).fit(data)
    items, _ = model.recommend(np.array([0]), data.matrix[[0]], 3, exclude_seen=False)
    assert items[0].tolist() == [3, 2, 1]
    assert (
        BuyAgain(half_life_days=None)
        .fit(data)
        .recommend(np.array([0]), data.matrix[[0]], 1, exclude_seen=False)[0][0, 0]
        == 1
    )


def test_content_reaches_items_nobody_touched(data: Interactions) -> None:
    model = ContentSimilarity().fit(data)
    untouched = np.setdiff1d(np.arange(N_ITEMS), data.item_rows)
    scores = model.score(USERS, data.matrix[USERS])
    assert (scores > 0).any(axis=0).sum() >= N_ITEMS - len(untouched)
    embedded = model.embed(["green tea kettle"])
    assert embedded.shape == (1, model.item_vectors_.shape[1])
    assert embedded.nnz > 0


def test_content_without_text_is_a_clear_error(data: Interactions) -> None:
    bare = Interactions(data.matrix, data.user_rows, data.item_rows, data.timestamps, data.weights)
    with pytest.raises(ValueError, match="one text per item"):
        ContentSimilarity().fit(bare)


def test_blend_modes_differ_on_repeats(data: Interactions) -> None:
    blend = Blend(
        {"buy_again": BuyAgain(), "popularity": Popularity()},
        weights={
            "discover": {"buy_again": 0.0, "popularity": 1.0},
            "all": {"buy_again": 1.0, "popularity": 0.1},
        },
    ).fit(data)
    history = data.matrix[USERS]
    repeat_items, _ = blend.recommend(USERS, history, 3, mode="all")
    new_items, _ = blend.recommend(USERS, history, 3, mode="discover")
    for row in range(len(USERS)):
        seen = set(history[row].indices)
        assert set(repeat_items[row]) <= seen
        assert not set(new_items[row]) & seen


def test_blend_fills_from_popularity_for_a_new_user(data: Interactions) -> None:
    blend = Blend(
        {"als": ALS(factors=4, iterations=3, random_state=0), "popularity": Popularity()},
        weights={"discover": {"als": 1.0, "popularity": 0.0}, "all": {"als": 1.0}},
    ).fit(data)
    empty = sp.csr_matrix((1, N_ITEMS), dtype=np.float32)
    items, scores = blend.recommend(np.array([N_USERS + 5]), empty, 3)
    popular = np.argsort(-np.bincount(data.item_rows, minlength=N_ITEMS), kind="stable")[:3]
    assert items[0].tolist() == popular.tolist()
    assert (scores > 0).all()


def test_top_k_orders_best_first_and_excluded_items_last() -> None:
    scores = np.array([[0.1, 0.9, -np.inf, 0.5]], dtype=np.float32)
    items, values = top_k(scores, 3)
    assert items.tolist() == [[1, 3, 0]]
    assert values[0].tolist() == pytest.approx([0.9, 0.5, 0.1])
    items, values = top_k(scores, 10)
    assert items.tolist() == [[1, 3, 0, 2]]
    assert values[0, -1] == -np.inf


def test_foreign_or_broken_artifacts_are_refused(tmp_path: Path, data: Interactions) -> None:
    with pytest.raises(ArtifactError, match="no manifest"):
        load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ArtifactError, match="not a shopcast model"):
        load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "shopcast-model", "format_version": 99}))
    with pytest.raises(ArtifactError, match="format version 99"):
        load(tmp_path)
    blend = Blend({"popularity": Popularity()}).fit(data)
    save(ModelBundle(blend, np.array(["u"] * N_USERS), np.array(["i"] * N_ITEMS)), tmp_path / "ok")
    (tmp_path / "ok" / "arrays" / "popularity.item_scores.npy").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="cannot read array"):
        load(tmp_path / "ok")


def test_als_continues_from_previous_factors(data: Interactions) -> None:
    full = ALS(factors=8, iterations=10, random_state=3, num_threads=1).fit(data)
    warm = ALS(factors=8, iterations=10, random_state=4, num_threads=1).fit_from(data, full, iterations=1)
    history = data.matrix[USERS]
    a, b = full.score(USERS, history).ravel(), warm.score(USERS, history).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95
    cold = ALS(factors=8, iterations=1, random_state=4, num_threads=1).fit(data).score(USERS, history).ravel()
    assert np.corrcoef(a, cold)[0, 1] < np.corrcoef(a, b)[0, 1]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pair_scores_are_the_dense_scores_of_those_items(name: str, data: Interactions) -> None:
    model = make_models()[name].fit(data)
    history = data.matrix[USERS]
    rng = np.random.default_rng(3)
    items = rng.integers(-1, N_ITEMS, size=(len(USERS), 7))
    dense = model.score(USERS, history)
    expected = np.where(items >= 0, np.take_along_axis(dense, np.maximum(items, 0), axis=1), 0.0)
    np.testing.assert_allclose(model.score_pairs(USERS, history, items), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("density", [0.002, 0.9])  # short rows: scipy's look-up; long rows: dense blocks
def test_sparse_at_reads_the_values_at_each_rows_items(
    density: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("models.base.DENSE_BLOCK_CELLS", 3_000)  # several blocks of rows
    rng = np.random.default_rng(4)
    matrix = sp.random(40, 1_000, density=density, format="csr", dtype=np.float32, random_state=5)
    items = rng.integers(-1, 1_000, size=(40, 12))
    expected = np.where(items >= 0, matrix.toarray()[np.arange(40)[:, None], np.maximum(items, 0)], 0.0)
    assert np.array_equal(sparse_at(matrix, items), expected.astype(np.float32))


def _same_ranking(found: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]) -> None:
    """Equal scores, and the same items wherever the order is not a tie at the cut."""
    (items, scores), (want_items, want_scores) = found, expected
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    for row in range(len(items)):
        cut = want_scores[row, -1]
        clear = want_scores[row] > cut + 1e-6
        assert set(items[row][scores[row] > cut + 1e-6]) == set(want_items[row][clear])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_recommend_both_is_recommend_without_and_with_seen_items(name: str, data: Interactions) -> None:
    model = make_models()[name].fit(data)
    history = data.matrix[USERS]
    unseen, everything = model.recommend_both(USERS, history, 6)
    _same_ranking(unseen, model.recommend(USERS, history, 6, exclude_seen=True))
    _same_ranking(everything, model.recommend(USERS, history, 6, exclude_seen=False))
    assert any(set(row) & set(history[i].indices) for i, row in enumerate(everything[0]))


def test_blend_ranks_every_mode_at_once_as_one_at_a_time(data: Interactions) -> None:
    components = {name: model for name, model in make_models().items() if name != "bpr"}
    weights = {
        "discover": dict.fromkeys(components, 1.0) | {"buy_again": 0.0},
        "all": {"als": 0.5, "buy_again": 2.0, "co_purchase": 1.0, "trending": 0.2},
    }
    blend = Blend(components, weights=weights).fit(data)
    history = data.matrix[USERS]
    together = blend.rank_modes(USERS, history, 8, per_source=5)
    for mode in ("discover", "all"):
        items, scores, sources = blend.rank(USERS, history, 8, mode=mode, per_source=5)
        np.testing.assert_allclose(together[mode][1], scores, rtol=1e-5, atol=1e-6)
        assert (together[mode][0] == items).all()
        assert (together[mode][2] == sources).all()
