"""Serving throughput: user recommendations from a running `shopcast serve`, beside a bare endpoint.

    python bench/serve.py [--items 50000] [--users 100000] [--workers 2] [--seconds 15]

Builds a catalog of `--items` items (5% out of stock on some channel) and synthetic history for
`--users` users in a fresh PostgreSQL database, trains and publishes a model, then drives
`GET /v1/users/{id}/recommendations?n=20` with `wrk` (64 connections on loopback) in three
cases: users with no new events (precomputed candidates), the same with Redis stopped, and
(Redis started again) users with events since training (their answer is ranked live:
folded-in factors, neighbours of the new history; the users are cycled so that the
per-process cache never answers). Before and after each case
the same `wrk` drives a bare Litestar app that returns a fixed 20-item JSON list, served by the
same Granian server with the same worker count: the ratio is the figure; absolute rates depend
on the machine. Needs `wrk` (Debian: apt-get install wrk), PostgreSQL and `redis-server`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHOPCAST = str(Path(sys.executable).with_name("shopcast"))
PG_ADMIN = os.environ.get("SHOPCAST_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CHANNELS = ("web", "app", "store")
CONNECTIONS = 64
FRESH_USERS = 30_000  # more than the live-ranking cache holds, so every answer is ranked anew

BARE_APP = """
from litestar import Litestar, get

ITEMS = [
    {"item_id": f"i{n}", "title": f"Item {n}", "price": 9.99, "url": f"https://shop.example/i{n}",
     "image_url": f"https://shop.example/i{n}.jpg", "score": 1.0 / (n + 1), "source": "als"}
    for n in range(20)
]


@get("/bare", sync_to_thread=False)
def bare() -> list[dict[str, object]]:
    return ITEMS


app = Litestar([bare])
"""

SERVE_BARE = """
import sys
from granian.constants import Interfaces
from granian.server import Server
Server("bare_app:app", address="127.0.0.1", port=int(sys.argv[1]), interface=Interfaces.ASGI,
       workers=int(sys.argv[2]), log_access=False, log_enabled=False).serve()
"""

WRK_SCRIPT = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local counter = 1
local threads = 0
wrk.headers["Authorization"] = "Bearer %(key)s"

setup = function(thread)
  threads = threads + 1
  thread:set("offset", math.floor((threads - 1) * #paths / %(threads)d))
end

init = function(args)
  counter = offset
end

request = function()
  counter = counter %% #paths + 1
  return wrk.format("GET", paths[counter])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "seconds": %%f, "p50_ms": %%f, "p99_ms": %%f, '
    .. '"errors": %%d, "non_2xx": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_catalog(path: Path, n_items: int, rng: np.random.Generator) -> None:
    categories = [f"category-{c}" for c in range(200)]
    words = ["linen", "cotton", "organic", "classic", "slim", "travel", "kids", "home", "sport", "gift"]
    with path.open("w") as out:
        for n in range(n_items):
            available: bool | dict[str, bool] = True
            if rng.random() < 0.05:  # out of stock somewhere
                available = {c: bool(rng.random() < 0.5) for c in CHANNELS}
            record = {
                "item_id": f"i{n}",
                "title": f"{words[n % 10].title()} {words[(n // 10) % 10]} item {n}",
                "category": categories[n % len(categories)],
                "tags": [words[n % 7], words[n % 3]],
                "price": round(float(rng.uniform(2, 200)), 2),
                "currency": "EUR",
                "url": f"https://shop.example/p/i{n}",
                "image_url": f"https://cdn.shop.example/i{n}.jpg",
                "available": available,
            }
            out.write(json.dumps(record) + "\n")


def write_history(path: Path, n_users: int, n_items: int, rng: np.random.Generator) -> int:
    """Every user has a few events (geometric, mean 15) on power-law items over 60 days."""
    per_user = rng.geometric(1 / 15, n_users)
    users = np.repeat(np.arange(n_users), per_user)
    count = len(users)
    popularity = rng.permutation(n_items)
    items = popularity[np.minimum(rng.zipf(1.15, count) - 1, n_items - 1)]
    kinds = rng.choice(["view", "add_to_cart", "purchase"], count, p=[0.8, 0.12, 0.08])
    stamps = 1.75e9 + rng.uniform(0, 60 * 86_400, count)
    order = np.argsort(stamps)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(np.char.add("u", users[order].astype(str))),
                "item_id": pa.array(np.char.add("i", items[order].astype(str))),
                "event": pa.array(kinds[order]),
                "timestamp": stamps[order],
                "channel": pa.array(np.array(CHANNELS)[rng.integers(0, 3, count)]),
            }
        ),
        path,
    )
    return count


def run(command: list[str], env: dict[str, str], what: str) -> str:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    print(f"  {what}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return done.stdout


@contextmanager
def process(
    command: list[str], env: dict[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_until_up(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def wrk(base: str, paths: list[str], key: str, workdir: Path, seconds: int, threads: int) -> dict[str, float]:
    paths_file = workdir / f"paths-{uuid.uuid4().hex[:6]}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT % {"paths": paths_file, "key": key, "threads": threads})
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(CONNECTIONS),
        "-d",
        f"{seconds}s",
        "-s",
        str(script),
        base,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    result["rate"] = result["requests"] / result["seconds"]
    return result


def post_fresh_events(base: str, key: str, users: list[int], n_items: int) -> None:
    """One purchase for each user, now: their next answer must be ranked live and exclude it."""
    rng = np.random.default_rng(1)
    now = time.time()
    lines = [
        json.dumps(
            {
                "user_id": f"u{u}",
                "item_id": f"i{int(rng.integers(n_items))}",
                "event": "purchase",
                "timestamp": now,
                "channel": "web",
            }
        )
        for u in users
    ]
    for start in range(0, len(lines), 10_000):
        body = "\n".join(lines[start : start + 10_000]) + "\n"
        response = httpx.post(
            f"{base}/v1/events/bulk",
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
            timeout=300,
        )
        response.raise_for_status()
        assert response.json()["rejected"] == 0, response.text


async def _admin(sql: str, database: str | None = None) -> None:
    url = PG_ADMIN if database is None else f"{PG_ADMIN.rsplit('/', 1)[0]}/{database}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument(
        "--keep", type=Path, help="keep the prepared shop here and reuse it next time (skips training)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("redis-server") is None:
        raise SystemExit("needs wrk and redis-server on PATH (Debian: apt-get install wrk redis-server)")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        table = bench(args.keep, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                table = bench(Path(tmp), args)
            finally:
                state = Path(tmp) / "state.json"
                if state.exists():
                    database = json.loads(state.read_text())["database"]
                    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    print(
        f"\nGET /v1/users/{{id}}/recommendations?n=20 — {args.items:,} items, {args.users:,} users,"
        f" {args.workers} Granian worker(s), wrk {CONNECTIONS} connections, {args.seconds} s each\n"
    )
    header = ("case", "req/s", "p50 ms", "p99 ms", "errors", "bare req/s", "bare p99", "vs bare")
    print(f"{header[0]:<34}" + "".join(f" {h:>10}" for h in header[1:]))
    for case, ours, bare in table:
        errors = int(ours["errors"] + ours["non_2xx"])
        ratio = ours["rate"] / bare["rate"]
        print(
            f"{case:<34} {ours['rate']:>10,.0f} {ours['p50_ms']:>10.2f} {ours['p99_ms']:>10.2f}"
            f" {errors:>10} {bare['rate']:>10,.0f} {bare['p99_ms']:>10.2f} {ratio:>10.0%}"
        )


def prepare(workdir: Path, env: dict[str, str], args: argparse.Namespace, rng: np.random.Generator) -> str:
    """Catalog, history, a trained model and a key in a fresh database; returns the key."""
    print("preparing (catalog, history, training)", file=sys.stderr)
    run([SHOPCAST, "db", "upgrade"], env, "migrate")
    write_catalog(workdir / "items.ndjson", args.items, rng)
    run([SHOPCAST, "import", "items", str(workdir / "items.ndjson")], env, f"import {args.items:,} items")
    events = write_history(workdir / "events.parquet", args.users, args.items, rng)
    run(
        [SHOPCAST, "train", "--events", str(workdir / "events.parquet"), "--target", "all", "--force"],
        env,
        f"train on {events:,} events",
    )
    key = run(
        [SHOPCAST, "keys", "create", "--name", "bench", "--scopes", "recs:read,events:write"], env, "key"
    )
    return key.strip()


def bench(workdir: Path, args: argparse.Namespace) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    rng = np.random.default_rng(7)
    redis_port, port, bare_port = free_port(), free_port(), free_port()
    state_file = workdir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if not state:
        database = f"shopcast_bench_{uuid.uuid4().hex[:8]}"
        state = {"database": database, "items": args.items, "users": args.users}
        asyncio.run(_admin(f'CREATE DATABASE "{state["database"]}"'))
        state_file.write_text(json.dumps(state))
    elif (state["items"], state["users"]) != (args.items, args.users):
        raise SystemExit(f"{workdir} holds a shop of {state['items']} items and {state['users']} users")
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    env = {
        **os.environ,
        "SHOPCAST_DATABASE_URL": f"{base}/{state['database']}",
        "SHOPCAST_DATA_DIR": str(workdir / "var"),
        "SHOPCAST_SECRET_KEY": "bench-secret",
        "SHOPCAST_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "SHOPCAST_RATE_LIMIT_PER_MINUTE": str(10**9),  # counted as in production, never reached
        "SHOPCAST_LOG_LEVEL": "WARNING",
    }
    if "key" not in state:
        state["key"] = prepare(workdir, env, args, rng)
        state_file.write_text(json.dumps(state))
    key = state["key"]
    # the model was trained from a file: stored events are the fresh ones of an earlier run
    asyncio.run(_admin("DELETE FROM events", state["database"]))
    (workdir / "bare_app.py").write_text(BARE_APP)
    users = np.random.default_rng(11).permutation(args.users)  # the same groups on every run
    split = min(FRESH_USERS, args.users // 3)
    fresh, settled = users[:split].tolist(), users[split:].tolist()

    def paths(group: list[int]) -> list[str]:
        return [f"/v1/users/u{u}/recommendations?n=20" for u in group]

    def measure(url: str, group: list[str]) -> dict[str, float]:
        wrk(url, group, key, workdir, 3, args.wrk_threads)  # warm up
        return wrk(url, group, key, workdir, args.seconds, args.wrk_threads)

    def case(name: str, group: list[str]) -> tuple[str, dict[str, float], dict[str, float]]:
        """Ours between two runs of the bare endpoint, whose figures are averaged (the machine drifts)."""
        before = measure(bare, ["/bare"])
        result = measure(ours, group)
        after = measure(bare, ["/bare"])
        return name, result, {k: (before[k] + after[k]) / 2 for k in before}

    ours, bare = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
    table = []
    redis_server = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    with (
        process(redis_server, env) as redis,
        process([SHOPCAST, "serve", "--port", str(port), "--workers", str(args.workers)], env),
        process([sys.executable, "-c", SERVE_BARE, str(bare_port), str(args.workers)], env, cwd=workdir),
    ):
        wait_until_up(f"{ours}/health/ready")
        wait_until_up(f"{bare}/bare")
        print("measuring", file=sys.stderr)
        table.append(case("users without new events", paths(settled)))
        # Redis stopped before the fresh events: their ranking goes on in the background for a
        # while after they arrive, and would be measured here too
        redis.terminate()
        redis.wait()
        table.append(case("Redis stopped", paths(settled)))
        with process(redis_server, env):
            time.sleep(2)
            post_fresh_events(ours, key, fresh, args.items)
            time.sleep(3)  # every worker polls new events each second
            table.append(case("users with fresh events (fold-in)", paths(fresh)))
    return table


if __name__ == "__main__":
    main()
