"""Ingest throughput: POST /v1/events/bulk and `shopcast import`, beside a plain executemany.

    python bench/ingest.py [--events 200000] [--databases sqlite,postgres]

For each database the same synthetic events go in three ways, each into an emptied events
table: the driver's own executemany of the rows (the baseline: no validation, no dedupe),
the bulk HTTP endpoint of a running `shopcast serve`, and `shopcast import` of an NDJSON file
(process start included). Prints a table; ratios hold across machines, absolute rates do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

SHOPCAST = str(Path(sys.executable).with_name("shopcast"))
PG_ADMIN = os.environ.get("SHOPCAST_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret"  # noqa: S105 (a throwaway database)
COLUMNS = (
    "event_id",
    "user_id",
    "item_id",
    "event",
    "occurred_at",
    "channel",
    "quantity",
    "price",
    "session_id",
)


def synthetic_events(count: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    kinds = ["view"] * 8 + ["add_to_cart", "purchase"]
    start = 1_700_000_000
    return [
        {
            "event_id": f"e{n}",
            "user_id": f"u{int(rng.paretovariate(1.2)) % 20_000}",
            "item_id": f"i{int(rng.paretovariate(1.1)) % 50_000}",
            "event": rng.choice(kinds),
            "timestamp": start + n,
            "channel": rng.choice(("web", "app", "store")),
            "quantity": 1,
            "price": round(rng.uniform(1, 50), 2),
            "session_id": f"s{n // 8}",
        }
        for n in range(count)
    ]


def rows_of(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (
            e["event_id"],
            e["user_id"],
            e["item_id"],
            e["event"],
            datetime.fromtimestamp(float(e["timestamp"]), UTC),  # type: ignore[arg-type]
            e["channel"],
            e["quantity"],
            e["price"],
            e["session_id"],
        )
        for e in events
    ]


def _iso(moment: object) -> str:
    assert isinstance(moment, datetime)
    return moment.isoformat()


def executemany_sqlite(path: Path, rows: list[tuple[object, ...]], batch: int = 5_000) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = f"INSERT INTO events ({', '.join(COLUMNS)}, received_at) VALUES ({', '.join('?' * 9)}, ?)"
    now = datetime.now(UTC).isoformat()
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        with conn:
            chunk = [(*r[:4], _iso(r[4]), *r[5:], now) for r in rows[start : start + batch]]
            conn.executemany(sql, chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def executemany_postgres(dsn: str, rows: list[tuple[object, ...]], batch: int = 5_000) -> float:
    conn = await asyncpg.connect(dsn)
    placeholders = ", ".join(f"${n}" for n in range(1, 10))
    sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        async with conn.transaction():
            await conn.executemany(sql, rows[start : start + batch])
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed


def empty_events(url: str) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1])
        with conn:
            conn.execute("DELETE FROM events")
        conn.close()
    else:

        async def run() -> None:
            conn = await asyncpg.connect(url.replace("+asyncpg", ""))
            await conn.execute("TRUNCATE events")
            await conn.close()

        asyncio.run(run())


def via_bulk_endpoint(env: dict[str, str], body: bytes) -> float:
    key = subprocess.run(
        [SHOPCAST, "keys", "create", "--name", "bench", "--scopes", "events:write"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = 18_000 + random.randrange(1_000)
    server = subprocess.Popen(
        [SHOPCAST, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        started = time.perf_counter()
        response = httpx.post(
            f"{base}/v1/events/bulk",
            content=(body[i : i + 65_536] for i in range(0, len(body), 65_536)),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
            timeout=600,
        )
        elapsed = time.perf_counter() - started
        report = response.json()
        assert report["rejected"] == 0, report
        return elapsed
    finally:
        server.terminate()
        server.wait()


def via_import(env: dict[str, str], path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([SHOPCAST, "import", "events", str(path)], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def bench_database(
    name: str, url: str, events: list[dict[str, object]], workdir: Path
) -> list[tuple[str, str, float]]:
    env = {
        **os.environ,
        "SHOPCAST_DATABASE_URL": url,
        "SHOPCAST_DATA_DIR": str(workdir / name),
        "SHOPCAST_SECRET_KEY": SECRET,
        "SHOPCAST_RATE_LIMIT_PER_MINUTE": "0",
        "SHOPCAST_LOG_LEVEL": "WARNING",
    }
    subprocess.run([SHOPCAST, "db", "upgrade"], env=env, check=True, capture_output=True)
    body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    ndjson = workdir / f"{name}-events.ndjson"
    ndjson.write_bytes(body)
    rows = rows_of(events)
    results = []
    empty_events(url)
    if name == "sqlite":
        baseline = executemany_sqlite(Path(url.split("///", 1)[1]), rows)
    else:
        baseline = asyncio.run(executemany_postgres(url.replace("+asyncpg", ""), rows))
    results.append((name, "executemany (baseline)", baseline))
    empty_events(url)
    results.append((name, "POST /v1/events/bulk", via_bulk_endpoint(env, body)))
    empty_events(url)
    results.append((name, "shopcast import (ndjson)", via_import(env, ndjson)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    events = synthetic_events(args.events)
    table: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.databases.split(","):
            if name == "sqlite":
                table += bench_database(name, f"sqlite+aiosqlite:///{workdir / 'bench.db'}", events, workdir)
            elif name == "postgres":
                db = f"shopcast_bench_{uuid.uuid4().hex[:8]}"
                asyncio.run(_admin(f'CREATE DATABASE "{db}"'))
                try:
                    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
                    table += bench_database(name, f"{base}/{db}", events, workdir)
                finally:
                    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    print(f"\ningest of {args.events:,} events (each path into an emptied table)\n")
    print(f"{'database':<10} {'path':<28} {'seconds':>8} {'events/s':>10} {'vs baseline':>12}")
    baselines = {db: s for db, path, s in table if path.startswith("executemany")}
    for db, path, seconds in table:
        rate = args.events / seconds
        print(f"{db:<10} {path:<28} {seconds:>8.2f} {rate:>10,.0f} {baselines[db] / seconds:>11.2f}x")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
