"""`shopcast demo`: the sample shop imported, a key made, and the service started."""

from __future__ import annotations

import csv
import gzip
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import numpy as np
from sqlalchemy import func, select

from service.campaigns.definition import CampaignIn
from service.cli.campaign import format_report
from service.cli.common import run_with_context, say, settings_from_env
from service.cli.importing import describe, import_file
from service.cli.serve import serve
from service.cli.training import config_from, print_table, results_table, train_with_progress
from service.context import Context
from service.errors import ShopcastError
from service.ingest.batch import prepare_batch, write_batch
from service.ingest.kinds import EventKind
from service.records.events import EventIn
from service.retraining import registry_for
from service.serving.answers import Filters
from service.storage.tables import campaign_recipients, events
from service.tracking.service import record_click

SAMPLE = Path(__file__).resolve().parent.parent / "demo" / "sample"
FILES = (("items", "items.csv.gz"), ("users", "users.ndjson.gz"), ("events", "events.csv.gz"))
DEMO_SCOPES = "events:write,catalog:write,users:write,recs:read,campaigns:write,analytics:read"


def recent_copy(source: Path, target: Path, now: datetime | None = None) -> int:
    """Copy the sample's events moved forward by whole weeks (weekdays kept) to end in the last
    seven days, so that trending items and analytics of recent periods have something to show.
    Returns the number of weeks."""
    with gzip.open(source, "rt", newline="") as file:
        rows = list(csv.DictReader(file))
    moments = [datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")) for row in rows]
    weeks = max(0, ((now or datetime.now(UTC)) - max(moments)).days // 7)
    with gzip.open(target, "wt", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for row, moment in zip(rows, moments, strict=True):
            writer.writerow({**row, "timestamp": (moment + timedelta(weeks=weeks)).isoformat()})
    return weeks


async def load_sample(ctx: Context) -> str:
    """Import the sample once (a second run finds it there) and create a key for the demo."""
    async with ctx.engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
    if stored:
        say(f"sample already imported ({stored} events)")
    else:
        with tempfile.TemporaryDirectory() as scratch:
            weeks = recent_copy(SAMPLE / "events.csv.gz", Path(scratch) / "events.csv.gz")
            say(f"the sample's dates move forward {weeks} weeks, so that its last week is this one")
            for kind, name in FILES:
                path = Path(scratch) / name if kind == "events" else SAMPLE / name
                report = await import_file(ctx, kind, str(path), progress=True)
                say(describe(report, kind, dry_run=False))
    current = await registry_for(ctx).current()
    if current is None:
        say("training on the sample (about half a minute) ...")
        result, version, verdict = await train_with_progress(
            ctx, None, config_from(seed=42, threads=0, target="purchase")
        )
        print_table(results_table(result), result.split)
        say(f"{verdict}; serving model {version}")
    else:
        say(f"model {current.version} is served (retrain with `shopcast train`)")
    await show_recommendations(ctx)
    await write_sample_email(ctx)
    await run_sample_campaign(ctx)
    new = await ctx.keys.create("demo", DEMO_SCOPES)
    return new.secret


async def show_recommendations(ctx: Context, users: int = 3, n: int = 5) -> None:
    """A few sample users' recommendations, and items similar to the best seller, with titles."""
    await ctx.serving.ensure_ready()
    model = ctx.serving.model
    if model is None:
        return
    buyers = np.argsort(-np.diff(model.purchased.indptr), kind="stable")[:users]
    for row in buyers.tolist():
        user_id = str(model.bundle.user_ids[row])
        answer = ctx.answers.for_user(user_id, n, Filters())
        say(f"\nrecommended for user {user_id} ({answer.strategy}):")
        for rank, pick in enumerate(answer.picks, start=1):
            say(f"  {rank}. {pick.item.title} (#{pick.item.item_id})  [{pick.source}]")
    best_seller = model.item_ids[int(model.popular[0])]
    similar = ctx.answers.similar(best_seller, n, Filters(), ("item_knn", "content", "als"))
    info = ctx.serving.catalog.get(best_seller)
    if similar is not None and info is not None:
        say(f"\nsimilar to the best seller, {info.title}:")
        for pick in similar.picks:
            say(f"  - {pick.item.title} (#{pick.item.item_id})  [{pick.source}]")


async def write_sample_email(ctx: Context) -> None:
    """One personalized "recommended for you" email for a sample user, sent to the outbox."""
    model = ctx.serving.model
    if model is None:
        return
    for row in np.argsort(-np.diff(model.purchased.indptr), kind="stable")[:20].tolist():
        buyer = str(model.bundle.user_ids[row])
        try:
            delivery, _ = await ctx.messaging.send(
                f"demo-{buyer}-{model.version}",
                buyer,
                "email",
                "recommended_for_you",
                item_ids=[],
                recommendations=6,
                body={"demo": buyer, "model": model.version},
            )
        except ShopcastError:  # no address, or no consent: the next best customer
            continue
        break
    else:
        return
    where = delivery.provider_id if delivery.status == "sent" else f"{delivery.status}: {delivery.error}"
    say(f"\na personalized email for user {buyer} ({delivery.channel}): {where}")


DEMO_CAMPAIGN = "demo: recommended for you"


async def run_sample_campaign(ctx: Context) -> None:
    """A small email campaign with a 20% holdout, sent to the outbox, then its report.

    The sample has no activity after the campaign, so the demo simulates some, and says so:
    clicks from a few recipients and purchases in both groups (more among those who got it).
    """
    existing = [c for c in await ctx.campaigns.store.all() if c.name == DEMO_CAMPAIGN]
    if existing:
        campaign = existing[0]
    else:
        definition = CampaignIn(
            name=DEMO_CAMPAIGN,
            channels=["email"],
            audience={"all": [{"consent": "email"}, {"event": "purchase", "min_count": 3}]},
            holdout=0.2,
            recommendations=6,
            frequency_cap=False,
        )
        campaign = await ctx.campaigns.launch((await ctx.campaigns.store.create(definition)).id)
        await _send_with_progress(ctx, campaign.id)
        await _simulate_activity(ctx, campaign.id)
    outbox = ctx.settings.data_dir / "outbox"
    say(f"\ncampaign {campaign.id} sent to the outbox ({outbox}); its report:")
    say(format_report(await ctx.campaigns.report(campaign.id)))


async def _send_with_progress(ctx: Context, campaign_id: int) -> None:
    await ctx.campaigns.runner.tick()  # starts and plans the run
    total = await ctx.campaigns.store.unsent(campaign_id)
    with click.progressbar(length=total, label="sending the demo campaign", file=sys.stderr) as bar:
        while (await ctx.campaigns.store.get(campaign_id)).status == "running":
            done = await ctx.messaging.sender.run_once("demo")
            bar.update(sum(done.values()))
            if not done:
                await ctx.campaigns.runner.tick()


async def _simulate_activity(ctx: Context, campaign_id: int) -> None:
    rng = np.random.default_rng(7)
    async with ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(campaign_recipients.c.user_id, campaign_recipients.c.outcome).where(
                    campaign_recipients.c.campaign_id == campaign_id
                )
            )
        ).all()
    model = ctx.serving.model
    item = model.item_ids[int(model.popular[0])] if model is not None else None
    if item is None:
        return
    clicks = purchases = 0
    bought = []
    for user_id, outcome in rows:
        treated = outcome == "treated"
        if treated and rng.random() < 0.15:
            await record_click(ctx.engine, user_id, item, f"campaign:{campaign_id}:1:{user_id}:email")
            clicks += 1
        if outcome in ("treated", "holdout") and rng.random() < (0.12 if treated else 0.06):
            bought.append(
                EventIn(user_id=user_id, item_id=item, event="purchase", timestamp=time.time(), price=3.5)
            )
    if bought:
        kind = EventKind(channels=ctx.settings.api.channels)
        purchases = (await write_batch(ctx.engine, kind, prepare_batch(kind, bought))).accepted
    say(f"simulated storefront activity after the send: {clicks} clicks, {purchases} purchases")


DEMO_STAFF = "staff@demo.shopcast"


async def demo_staff_login(ctx: Context) -> str:
    """The demo's admin login for the console, with a password made up for this run."""
    password = secrets.token_urlsafe(12)
    if not await ctx.staff.set_password(DEMO_STAFF, password):
        await ctx.staff.create(DEMO_STAFF, password, "admin", "Demo staff")
    return password


def _instructions(key: str, base: str, password: str) -> str:
    return f"""
shopcast demo is ready: the Complete Journey sample shop (CC0) is imported.

  Staff console: {base}/console
    sign in as {DEMO_STAFF} with the password {password}
    (made up for this run; `shopcast staff create` adds real staff)

  API key (scopes {DEMO_SCOPES}):
    export KEY={key}

  Try:
    curl -s {base}/v1/items/1082185 -H "Authorization: Bearer $KEY"
    curl -s {base}/v1/users/1 -H "Authorization: Bearer $KEY"
    curl -s {base}/v1/users/1/export -H "Authorization: Bearer $KEY" | head -c 600
    curl -s "{base}/v1/users/1/recommendations?n=5" -H "Authorization: Bearer $KEY"
    curl -s "{base}/v1/items/1082185/similar?n=5" -H "Authorization: Bearer $KEY"
    curl -s "{base}/v1/items/trending?window=30d&n=5" -H "Authorization: Bearer $KEY"
    curl -s -X POST {base}/v1/events -H "Authorization: Bearer $KEY" \\
         -H 'Content-Type: application/json' \\
         -d '{{"user_id":"1","item_id":"1082185","event":"view","timestamp":"2026-01-01T10:00:00Z"}}'
    curl -s -X POST {base}/v1/messages/preview -H "Authorization: Bearer $KEY" \\
         -H 'Content-Type: application/json' -d '{{"user_id":"1","template":"recommended_for_you"}}'
    curl -s {base}/v1/campaigns/1/report -H "Authorization: Bearer $KEY"
    curl -s {base}/health/ready

  OpenAPI: {base}/schema    Metrics: {base}/metrics
"""


@click.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-serve", is_flag=True, help="prepare only; do not start the service")
@click.pass_context
def demo(click_ctx: click.Context, port: int, no_serve: bool) -> None:
    """Import the sample shop, create a key, and serve on the embedded defaults."""
    settings = settings_from_env()
    say(f"database: {settings.database.url}")
    key = run_with_context(settings, load_sample)
    password = run_with_context(settings, demo_staff_login)
    say(_instructions(key, f"http://127.0.0.1:{port}", password))
    if not no_serve:
        click_ctx.invoke(serve, host="127.0.0.1", port=port, workers=1)
