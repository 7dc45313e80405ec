"""The `shopcast` command: keys, db upgrade, and imports of every format, on both databases."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner
from sqlalchemy import func, select

from service.cli import cli
from service.context import Context
from service.settings import Settings
from service.storage.tables import events, items, users

EVENTS_CSV = """event_id,user_id,item_id,event,timestamp,channel,quantity,price,session_id
e1,u1,i1,view,2024-01-01T10:00:00Z,web,,,s1
e2,u1,i2,add_to_cart,1704103200,app,2,3.5,s1
e3,u2,i1,purchase,2024-01-01 12:00:00,store,1,9.99,
"""


def run(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def count(settings: Settings, table) -> int:
    async def query() -> int:
        ctx = Context.create(settings)
        try:
            async with ctx.engine.connect() as conn:
                return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        finally:
            await ctx.close()

    return asyncio.run(query())


def test_keys_create_prints_only_the_key_on_stdout(env: dict[str, str]) -> None:
    code, out, err = run(env, "keys", "create", "--name", "shop", "--scopes", "events:write,recs:read")
    assert code == 0
    assert out.strip().startswith("sck_")
    assert len(out.strip().splitlines()) == 1
    assert "shown only now" in err
    code, out, _ = run(env, "keys", "list")
    assert "shop" in out
    assert "active" in out
    key_id = out.splitlines()[1].split()[0]
    assert run(env, "keys", "revoke", key_id)[0] == 0
    assert "revoked" in run(env, "keys", "list")[1]
    assert run(env, "keys", "revoke", key_id)[0] != 0


def test_keys_create_refuses_unknown_scopes(env: dict[str, str]) -> None:
    code, out, err = run(env, "keys", "create", "--name", "x", "--scopes", "everything")
    assert code == 2
    assert out == ""
    assert "unknown scope" in err


def test_db_upgrade_is_idempotent(env: dict[str, str]) -> None:
    assert run(env, "db", "upgrade")[0] == 0
    assert run(env, "db", "upgrade")[0] == 0


def test_import_events_csv(env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(EVENTS_CSV)
    code, _, err = run(env, "import", "events", str(path))
    assert code == 0, err
    assert "3 lines, 3 events stored" in err
    assert count(settings, events) == 3
    code, _, err = run(env, "import", "events", str(path))
    assert "3 duplicates skipped" in err


def test_import_reports_lines_and_fields_and_exits_1(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(
        EVENTS_CSV.encode()
        + b"e4,u3,i1,teleport,2024-01-01T10:00:00Z,web,,,\n"
        + b"e5,u3,i1,view,next tuesday,web,,,\n"
        + b"e6,u3,i1,view,2024-01-01T10:00:00Z,web,-1,,\n"
        + b"e7,u\xff3,i1,view,2024-01-01T10:00:00Z,web,,,\n"
        + b"e8,u3,i1,view,2024-01-01T10:00:00Z,web,,,,extra\n"
        + b"e9,u3,i1,view,2024-01-01T10:00:00Z,fax,,,\n"
    )
    code, out, err = run(env, "import", "events", str(path), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["accepted"] == 3
    assert {(e["line"], e["field"]) for e in report["errors"]} == {
        (5, "event"),
        (6, "timestamp"),
        (7, "quantity"),
        (8, "user_id"),
        (9, "row"),
        (10, "channel"),
    }
    assert "line 8: user_id: not valid UTF-8" in err


def test_atomic_import_stores_nothing_on_a_bad_line(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(EVENTS_CSV + "e4,u3,i1,view,not a time,web,,,\n")
    code, _, err = run(env, "import", "events", str(path), "--atomic")
    assert code == 1
    assert "nothing stored" in err
    assert count(settings, events) == 0


def test_dry_run_validates_without_storing(env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(EVENTS_CSV)
    code, _, err = run(env, "import", "events", str(path), "--dry-run")
    assert code == 0
    assert "3 valid, nothing stored (dry run)" in err
    assert count(settings, events) == 0


def test_import_ndjson_gzip_and_stdin(env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    records = [
        {"user_id": f"u{n}", "item_id": "i1", "event": "view", "timestamp": 1_704_103_200 + n}
        for n in range(10)
    ]
    body = "\n".join(json.dumps(r) for r in records).encode()
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(body))
    assert run(env, "import", "events", str(path))[0] == 0
    assert run(env, "import", "events", "-", "--format", "ndjson", stdin=body)[0] == 0
    assert count(settings, events) == 20


def test_import_items_and_users_from_parquet(env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    table = pa.table(
        {
            "item_id": ["a", "b"],
            "title": ["Apple", "Bread"],
            "price": [0.5, 2.25],
            "tags": [["fruit"], ["bakery", "fresh"]],
            "available": [True, False],
        }
    )
    pq.write_table(table, tmp_path / "items.parquet")
    code, _, err = run(env, "import", "items", str(tmp_path / "items.parquet"))
    assert code == 0, err
    assert count(settings, items) == 2
    users_csv = tmp_path / "users.csv"
    users_csv.write_text(
        "user_id,email,locale,timezone,consents.email,attributes.city,push_tokens\n"
        "u1,one@example.test,fr-FR,Europe/Paris,true,Lyon,t1|t2\n"
        "u2,,en,,false,,\n"
    )
    code, _, err = run(env, "import", "users", str(users_csv))
    assert code == 0, err
    assert count(settings, users) == 2


def test_import_explains_unknown_formats_and_missing_files(env: dict[str, str], tmp_path: Path) -> None:
    code, _, err = run(env, "import", "events", str(tmp_path / "events.xlsx"))
    assert code == 2
    assert "cannot tell the format" in err
    code, _, err = run(env, "import", "events", str(tmp_path / "missing.csv"))
    assert code == 1
    assert "no such file" in err


def test_the_demo_moves_the_sample_forward_by_whole_weeks(tmp_path: Path) -> None:
    import csv
    import gzip
    from datetime import UTC, datetime, timedelta

    from service.cli.demo import SAMPLE, recent_copy

    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    weeks = recent_copy(SAMPLE / "events.csv.gz", tmp_path / "events.csv.gz", now=now)
    with (
        gzip.open(SAMPLE / "events.csv.gz", "rt") as before,
        gzip.open(tmp_path / "events.csv.gz", "rt") as after,
    ):
        old, new = list(csv.DictReader(before)), list(csv.DictReader(after))
    assert len(new) == len(old)
    first_old = datetime.fromisoformat(old[0]["timestamp"].replace("Z", "+00:00"))
    first_new = datetime.fromisoformat(new[0]["timestamp"])
    assert first_new - first_old == timedelta(weeks=weeks)
    assert first_new.weekday() == first_old.weekday()
    last = max(datetime.fromisoformat(row["timestamp"]) for row in new)
    assert now - timedelta(days=7) < last <= now
    assert {k: v for k, v in new[5].items() if k != "timestamp"} == {
        k: v for k, v in old[5].items() if k != "timestamp"
    }
