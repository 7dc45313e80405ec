"""The training job: metrics by hand, the pipeline on a synthetic shop, the gate, the registry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from models import ArtifactError, load
from training import metrics
from training.events import EventDataError, EventLog, from_table
from training.gate import decide
from training.pipeline import TrainConfig, TrainingError, train
from training.registry import ModelRegistry, RegistryError

DAY = 86_400.0


def test_metrics_match_hand_computed_values() -> None:
    hits = np.array([[True, False, True, False], [False, False, False, False]])
    relevant = np.array([2, 1])
    # user 0: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3); user 1: 0
    assert metrics.ndcg_at_k(hits, relevant, 4) == pytest.approx((1.5 / (1 + 1 / np.log2(3))) / 2)
    assert metrics.recall_at_k(hits, relevant, 4) == pytest.approx(0.5)
    assert metrics.precision_at_k(hits, relevant, 4) == pytest.approx(0.25)
    # user 0: (1/1 + 2/3) / min(4, 2); user 1: 0
    assert metrics.map_at_k(hits, relevant, 4) == pytest.approx((1 + 2 / 3) / 2 / 2)
    assert metrics.hit_rate_at_k(hits, relevant, 4) == pytest.approx(0.5)
    assert metrics.ndcg_at_k(hits, relevant, 1) == pytest.approx(0.5)
    assert metrics.coverage(np.array([[1, 2, -1], [2, 3, 4]]), 10) == pytest.approx(0.4)


def synthetic_shop(
    users: int = 300, items: int = 120, days: int = 60, seed: int = 0, start: float = 1.7e9
) -> pa.Table:
    """Users in four taste groups view, cart and buy items of their group, some repeatedly."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[object]] = {
        k: [] for k in ("user_id", "item_id", "event", "timestamp", "session_id")
    }
    for user in range(users):
        group = user % 4
        pool = np.arange(group, items, 4)
        favourites = rng.choice(pool, 4, replace=False)
        for n in range(rng.integers(8, 20)):
            item = rng.choice(favourites) if rng.random() < 0.4 else rng.choice(pool)
            when = start + rng.uniform(0, days * DAY)
            session = f"{user}-{n // 3}"
            for kind in ("view", "add_to_cart", "purchase")[: rng.integers(1, 4)]:
                rows["user_id"].append(f"u{user}")
                rows["item_id"].append(f"i{item}")
                rows["event"].append(kind)
                rows["timestamp"].append(when)
                rows["session_id"].append(session)
    return pa.table(rows)


@pytest.fixture(scope="module")
def shop() -> EventLog:
    return from_table(synthetic_shop())


CONFIG = TrainConfig(seed=7, threads=1, max_eval_users=500)


@pytest.fixture(scope="module")
def result(shop: EventLog):
    return train(shop, CONFIG)


def test_the_pipeline_beats_most_popular_in_both_variants(result) -> None:
    for variant in ("novel", "all"):
        ours = result.metrics[variant]["ndcg@10"]
        baseline = result.baselines["most_popular"][variant]["ndcg@10"]
        assert ours > baseline, (variant, ours, baseline)
        assert result.metrics[variant]["users"] > 50


def test_the_blend_learned_different_weights_per_mode(result) -> None:
    weights = result.bundle.blend.weights
    assert set(weights) == {"discover", "all"}
    assert weights["discover"] != weights["all"]
    assert result.validation["all"] > 0


def test_same_seed_same_model(shop: EventLog, result) -> None:
    again = train(shop, CONFIG)
    assert again.metrics == result.metrics
    np.testing.assert_array_equal(
        again.bundle.blend.components["als"].item_factors_,
        result.bundle.blend.components["als"].item_factors_,
    )


def test_the_manifest_records_what_was_trained(result, tmp_path: Path) -> None:
    from models import save

    save(result.bundle, tmp_path / "m")
    loaded = load(tmp_path / "m")
    for key in ("trained_at", "code_version", "data_window", "parameters", "metrics", "split"):
        assert key in loaded.metadata, key
    assert (
        loaded.metadata["parameters"]["event_weights"]["purchase"]
        > loaded.metadata["parameters"]["event_weights"]["view"]
    )
    assert len(loaded.item_ids) == len(result.bundle.item_ids)


def table(rows: list[tuple[str, str, str, float]]) -> pa.Table:
    users, items, kinds, stamps = zip(*rows, strict=True) if rows else ((), (), (), ())
    return pa.table(
        {"user_id": list(users), "item_id": list(items), "event": list(kinds), "timestamp": list(stamps)}
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "0 events"),
        ([("u1", f"i{n}", "purchase", 1.7e9 + n) for n in range(20)], "two users"),
        ([(f"u{n}", "i1", "purchase", 1.7e9 + n) for n in range(20)], "two items"),
        ([(f"u{n % 3}", f"i{n}", "view", 1.7e9 + n) for n in range(20)], "no purchase events"),
        ([(f"u{n % 3}", f"i{n}", "purchase", 1.7e9) for n in range(20)], "same timestamp"),
        ([(f"u{n % 3}", f"i{n}", "purchase", time.time() + 30 * DAY) for n in range(20)], "in the future"),
    ],
)
def test_unusable_data_is_refused_clearly(rows: list[tuple[str, str, str, float]], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        train(from_table(table(rows)), CONFIG)


def test_bad_event_files_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(EventDataError, match="unknown event types teleport"):
        from_table(table([("u", "i", "teleport", 1.7e9)]))
    with pytest.raises(EventDataError, match="need the columns timestamp"):
        from_table(pa.table({"user_id": ["u"], "item_id": ["i"], "event": ["view"]}))
    bad_time = pa.table({"user_id": ["u"], "item_id": ["i"], "event": ["view"], "timestamp": ["yesterday"]})
    with pytest.raises(EventDataError, match="'yesterday' is not ISO 8601"):
        from_table(bad_time)
    from training.events import read_file

    with pytest.raises(EventDataError, match="no such file"):
        read_file(tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(EventDataError, match="cannot tell the format"):
        read_file(tmp_path / "x.txt")


def test_files_in_the_record_format_load_with_iso_and_unix_times(tmp_path: Path) -> None:
    from training.events import read_file

    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event,timestamp,session_id\n"
        "u1,i1,view,2024-01-01T10:00:00Z,s1\n"
        "u1,i2,purchase,2024-01-01T11:00:00+01:00,s1\n"
        "007,i1,purchase,1704106800,\n"
    )
    log = read_file(path)
    assert len(log) == 3
    assert sorted(log.user_ids.tolist()) == ["007", "u1"]
    assert log.timestamps.tolist() == [1704103200.0, 1704103200.0, 1704106800.0]
    assert (log.sessions >= 0).sum() == 2


def test_the_gate_refuses_a_worse_model_on_the_same_test_events(shop: EventLog) -> None:
    cutoff = np.quantile(shop.timestamps, 0.7)
    served = train(shop.select(shop.timestamps < cutoff), CONFIG).bundle
    weak = train(shop, TrainConfig(seed=7, threads=1, max_eval_users=500, sources=("popularity",)))
    decision = decide(weak, served, shop, CONFIG)
    assert decision.basis == "same test events"
    assert not decision.passed
    assert "worse than the served model" in decision.describe()
    strong = train(shop, CONFIG)
    assert decide(strong, served, shop, CONFIG).passed


def test_the_gate_lets_the_first_model_through(result, shop: EventLog) -> None:
    decision = decide(result, None, shop, CONFIG)
    assert decision.passed
    assert decision.basis == "no served model"


async def test_publish_list_rollback_and_prune(result, tmp_path: Path, ctx) -> None:
    registry = ModelRegistry(ctx.engine, tmp_path / "models", keep=2)
    first = await registry.publish(result.bundle, summary={})
    second = await registry.publish(result.bundle, summary={})
    assert (await registry.current()).version == second
    rolled = await registry.rollback(first)
    assert rolled.version == first
    assert (await registry.current()).version == first
    third = await registry.publish(result.bundle, summary={})
    listed = [v.version for v in await registry.versions()]
    assert listed[0] == third
    assert not registry.path(first).exists(), "beyond keep=2 and not current: pruned"
    assert registry.path(second).exists()
    with pytest.raises(RegistryError, match="no version"):
        await registry.rollback("19990101T000000Z-000000")
    with pytest.raises(RegistryError, match="no files"):
        await registry.rollback(first)
    (registry.path(second) / "manifest.json").write_text("{}")
    with pytest.raises(RegistryError, match="cannot be served"):
        await registry.rollback(second)
    assert (await registry.current()).version == third, "a refused rollback changes nothing"
    assert not list((tmp_path / "models").glob(".staging-*"))
    with pytest.raises(ArtifactError):
        load(registry.path(second))


def test_training_knows_the_same_event_types_as_ingestion() -> None:
    from service.records import EVENT_TYPES as ACCEPTED
    from training.events import EVENT_TYPES as TRAINED

    assert set(ACCEPTED) == set(TRAINED)
