"""Campaign throughput: launch to all delivered, with 1 and 2 workers, beside bare aiosmtplib.

    python bench/campaign.py [--recipients 20000] [--full] [--connections 8] [--concurrency 32]

Builds a shop (catalog, users with addresses and consent, history, a trained model) in a fresh
PostgreSQL database (SQLite when PostgreSQL does not answer), starts an aiosmtpd server that
discards what it gets in its own process, and then:

- bare: the same number of messages, rendered beforehand, sent by bare aiosmtplib over
  `--connections` connections (the ceiling for one sending process), before and after each
  campaign; the baseline of a campaign is the mean of the two runs beside it;
- ours: a "recommended for you" campaign (6 recommended items per email, no holdout) launched
  to everyone, with 1 and then 2 `shopcast worker` processes already running; timed from launch
  until the campaign is completed (planned, rendered, sent, every outcome recorded).

The ratio to the bare rate is the figure; absolute rates depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from messaging import bare_smtp, build_shop, free_port, server

from service.app import create_app
from service.campaigns.definition import CampaignIn
from service.context import Context
from service.messaging.compose import load_recipients
from service.retraining import train_and_publish
from service.settings import load_settings
from service.storage.migrate import upgrade
from training.pipeline import TrainConfig

POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


async def fresh_database(workdir: Path) -> tuple[str, str | None]:
    """(database URL, name of a PostgreSQL database to drop afterwards, or None for SQLite)."""
    name = f"shopcast_bench_{uuid.uuid4().hex[:8]}"
    try:
        conn = await asyncpg.connect(POSTGRES, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        print("PostgreSQL does not answer: using SQLite (one writer at a time)", file=sys.stderr)
        return f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES, timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def start_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    shopcast = str(Path(sys.executable).with_name("shopcast"))
    children = []
    for n in range(count):
        log = (logs / f"worker{count}-{n}.log").open("wb")
        children.append(subprocess.Popen([shopcast, "worker"], env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 120
    for n in range(count):  # ready when it says what it delivers on
        while b"delivering messages as" not in (logs / f"worker{count}-{n}.log").read_bytes():
            if time.monotonic() > deadline or children[n].poll() is not None:
                raise SystemExit(f"worker {n} did not start; see {logs}")
            time.sleep(0.1)
    return children


async def campaign_rate(ctx: Context, count: int, workers: int, env: dict[str, str], logs: Path) -> float:
    children = start_workers(workers, env, logs)
    try:
        definition = CampaignIn(
            name=f"bench with {workers} worker(s)",
            channels=["email"],
            audience={"consent": "email"},
            holdout=0.0,
            recommendations=6,
            frequency_cap=False,
        )
        created = await ctx.campaigns.store.create(definition)
        started = time.perf_counter()
        await ctx.campaigns.launch(created.id)
        while (await ctx.campaigns.store.get(created.id)).status != "completed":  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(30)
    report = await ctx.campaigns.report(created.id)
    sent = report["funnel"]["sent"]
    if sent != count:
        raise SystemExit(f"the campaign sent {sent} of {count}: {report['funnel']}")
    return count / elapsed


async def run(args: argparse.Namespace, workdir: Path, database: str) -> list[tuple[str, float, float]]:
    smtp_port = free_port()
    smtp_url = f"smtp://127.0.0.1:{smtp_port}?starttls=0&pool={args.connections}"
    env = {
        **os.environ,
        "SHOPCAST_DATABASE_URL": database,
        "SHOPCAST_DATA_DIR": str(workdir / "var"),
        "SHOPCAST_SECRET_KEY": "bench-secret",
        "SHOPCAST_SMTP_URL": smtp_url,
        "SHOPCAST_SEND_CONCURRENCY": str(args.concurrency),
        "SHOPCAST_CAMPAIGN_TICK_SECONDS": "0.2",
        "SHOPCAST_RETRAIN_CRON": "",
        "SHOPCAST_LOG_LEVEL": "WARNING",
    }
    settings = load_settings({k: v for k, v in env.items() if k.startswith("SHOPCAST_")})
    app = create_app(settings)
    app.state.ctx = ctx = Context.create(settings)
    rows = []
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            key = await ctx.keys.create("bench", "admin")
            print(f"preparing a shop with {args.recipients:,} recipients and its model", file=sys.stderr)
            await build_shop(client, {"Authorization": f"Bearer {key.secret}"}, args.recipients)
        await train_and_publish(ctx, None, TrainConfig(seed=1, threads=1, max_eval_users=500))
        await ctx.serving.refresh()
        print("rendering the bare baseline's messages", file=sys.stderr)
        users = [f"u{n}" for n in range(args.recipients)]
        rendered = []
        for start in range(0, len(users), 1_000):
            for r in await load_recipients(ctx.engine, ctx.cipher, users[start : start + 1_000]):
                out = await ctx.messaging.composer.for_user(
                    r, "recommended_for_you", "email", key=f"pre:{r.user_id}", recommendations=6
                )
                rendered.append((out.payload["to"], out.payload["raw"].encode()))
        sink = [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{smtp_port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ]
        with server(sink, smtp_port):
            print("bare aiosmtplib", file=sys.stderr)
            before = await bare_smtp(smtp_port, rendered, args.connections)
            for workers in (1, 2):
                print(f"campaign with {workers} worker(s), then bare aiosmtplib again", file=sys.stderr)
                ours = await campaign_rate(ctx, args.recipients, workers, env, workdir)
                after = await bare_smtp(smtp_port, rendered, args.connections)
                bare = (before + after) / 2  # the machine's speed drifts: bare on both sides of ours
                rows.append((f"campaign, {workers} worker{'s' if workers > 1 else ''}", ours, bare))
                before = after
    finally:
        await ctx.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--full", action="store_true", help="100,000 recipients")
    parser.add_argument(
        "--connections", type=int, default=8, help="SMTP connections (ours per worker, and bare)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="messages in flight per worker")
    args = parser.parse_args()
    if args.full:
        args.recipients = 100_000
    with tempfile.TemporaryDirectory() as tmp:
        database, pg_name = asyncio.run(fresh_database(Path(tmp)))
        try:
            upgrade(database)
            rows = asyncio.run(run(args, Path(tmp), database))
        finally:
            if pg_name:
                asyncio.run(drop_database(pg_name))
    print(
        f"\n{args.recipients:,} emails (6 recommended items each), {args.connections} SMTP conn. per sender"
    )
    print(f"{'what':<28} {'ours /s':>9}   {'bare aiosmtplib /s':>18} {'ours vs bare':>13}")
    for what, ours, bare in rows:
        print(f"{what:<28} {ours:>9,.0f}   {bare:>18,.0f} {ours / bare:>13.0%}")


if __name__ == "__main__":
    main()
