"""`shopcast train`, `evaluate` and `models` from the store (SQLite and PostgreSQL) and from files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.test_cli import run
from tests.test_training import synthetic_shop


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.parquet"
    pq.write_table(synthetic_shop(users=120, items=60), path)
    return path


def test_train_from_the_store_publishes_and_rollback_works(env: dict[str, str], events_file: Path) -> None:
    code, _, err = run(env, "import", "events", str(events_file))
    assert code == 0, err
    code, out, err = run(env, "train", "--threads", "1")
    assert code == 0, err
    assert "shopcast" in out
    assert "most_popular" in out
    assert "published model version" in err
    first = err.split("published model version ")[1].split()[0]
    code, out, err = run(env, "train", "--threads", "1", "--json")
    assert code == 0, err
    second = json.loads(out)["version"]
    assert second != first
    listed = run(env, "models", "list")[1]
    assert f"* {second}" in listed
    assert run(env, "models", "rollback", first)[0] == 0
    assert f"* {first}" in run(env, "models", "list")[1]
    code, _, err = run(env, "models", "rollback", "nope")
    assert code == 1
    assert "no version 'nope'" in err


def test_evaluate_prints_json_in_the_documented_shape(env: dict[str, str], events_file: Path) -> None:
    code, out, err = run(env, "evaluate", "--events", str(events_file), "--threads", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {"split", "results"} <= set(report)
    models = {(r["model"], r["variant"]) for r in report["results"]}
    assert models == {
        ("shopcast", "novel"),
        ("shopcast", "all"),
        ("most_popular", "novel"),
        ("most_popular", "all"),
    }
    assert all("ndcg@10" in r["metrics"] and "recall@20" in r["metrics"] for r in report["results"])
    assert "no model is published yet" in run(env, "models", "list")[2], "evaluate publishes nothing"


def test_train_without_events_says_why_and_publishes_nothing(env: dict[str, str]) -> None:
    code, _, err = run(env, "train")
    assert code == 1
    assert "0 events" in err
    assert "no model is published yet" in run(env, "models", "list")[2]


def test_train_from_a_bad_file_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event,timestamp\nu1,i1,teleport,1700000000\n")
    code, _, err = run(env, "train", "--events", str(path))
    assert code == 1
    assert "unknown event types teleport" in err


def test_recommend_prints_one_user_and_exports_many(
    env: dict[str, str], events_file: Path, tmp_path: Path
) -> None:
    assert run(env, "import", "events", str(events_file))[0] == 0
    items = tmp_path / "items.ndjson"
    items.write_text(
        "".join(json.dumps({"item_id": f"i{i}", "title": f"Item {i}"}) + "\n" for i in range(60))
    )
    assert run(env, "import", "items", str(items))[0] == 0
    assert run(env, "train", "--threads", "1")[0] == 0
    code, out, err = run(env, "recommend", "--user", "u3", "-n", "5")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 5
    assert lines[0].split()[0] == "1"
    assert "Item " in lines[0]
    users = tmp_path / "users.txt"
    users.write_text("u1\nu2\n\nstranger\n")
    code, _, err = run(
        env, "recommend", "--users-file", str(users), "--out", str(tmp_path / "recs.csv"), "-n", "3"
    )
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "recs.csv").read_text().splitlines()))
    assert [r["user_id"] for r in rows] == ["u1"] * 3 + ["u2"] * 3 + ["stranger"] * 3
    assert [r["rank"] for r in rows[:3]] == ["1", "2", "3"]
    code, _, _ = run(env, "recommend", "--users-file", str(users), "--out", str(tmp_path / "recs.ndjson"))
    exported = [json.loads(line) for line in (tmp_path / "recs.ndjson").read_text().splitlines()]
    assert len(exported) == 30
    assert set(exported[0]) == {"user_id", "item_id", "rank", "score"}
    code, _, err = run(env, "recommend", "--users-file", str(users), "--out", str(tmp_path / "recs.xlsx"))
    assert code != 0
    assert ".csv or .ndjson" in err
    code, _, err = run(env, "recommend", "--user", "u1", "--channel", "moon")
    assert code != 0
    assert "moon" in err
