"""Messaging throughput: personalized emails, social posts and pushes, beside bare sending, in one run.

    python bench/messaging.py [--emails 2000] [--connections 8] [--posts 3000]

Builds a small shop (catalog, users with addresses, history, a trained model) in a temporary
SQLite database, then:

- emails: each user's "recommended for you" email with 6 recommended items is rendered, stored
  as a delivery row and sent by the delivery loop over `--connections` pooled SMTP connections
  to an aiosmtpd server in its own process; beside it, bare aiosmtplib sends the same
  pre-rendered messages over the same number of connections to the same server, once before
  and once after ours (the baseline is their mean: the machine's speed drifts). Twice: to a
  server that discards what it gets (the cheapest receiver, so the strictest baseline) and to
  one that reads and prints every message (aiosmtpd's Debugging handler, to /dev/null);
- posts: social posts stored and delivered by the same loop to a local X-shaped HTTP API (its
  own process), beside bare aiohttp and bare httpx posting the same JSON with 64 connections;
- pushes: push messages (one device token each) delivered by the same loop through the FCM
  channel (service-account JWT traded for an access token, then `messages:send`) to a local
  FCM-shaped API in the same process as the X one, beside bare aiohttp and httpx posting the
  same `messages:send` bodies with the same bearer token.

The ratio to the bare rate is the figure; absolute rates depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import httpx
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.app import create_app
from service.context import Context
from service.messaging.channels.smtp import SmtpChannel, SmtpConfig
from service.messaging.compose import load_recipients
from service.messaging.deliveries import NewDelivery
from service.retraining import train_and_publish
from service.settings import load_settings
from service.storage.migrate import upgrade
from training.pipeline import TrainConfig

PROVIDER_API = """
import sys
from aiohttp import web
count = 0
async def tweet(request):
    global count
    body = await request.json()
    count += 1
    return web.json_response({"data": {"id": str(count), "text": body["text"]}}, status=201)
async def fcm_token(request):
    await request.post()
    return web.json_response({"access_token": "bench-access", "expires_in": 3600, "token_type": "Bearer"})
async def fcm_send(request):
    global count
    if request.headers.get("Authorization") != "Bearer bench-access":
        return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401)
    body = await request.json()
    assert body["message"]["token"]
    count += 1
    return web.json_response({"name": f"projects/{request.match_info['project']}/messages/{count}"})
app = web.Application()
app.router.add_post("/2/tweets", tweet)
app.router.add_post("/oauth2/token", fcm_token)
app.router.add_post("/v1/projects/{project}/messages:send", fcm_send)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def service_account(path: Path, token_uri: str) -> None:
    """A Google service-account file with a fresh RSA key (the local API does not check the JWT)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info = {
        "type": "service_account",
        "project_id": "bench",
        "client_email": "bench@bench.iam.gserviceaccount.com",
        "private_key": pem.decode(),
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))


def push_body(n: int) -> dict[str, Any]:
    """What the FCM channel sends for push number `n` (one device token)."""
    return {
        "message": {
            "token": f"device-{n}",
            "notification": {"title": "Picked for you", "body": f"New in the shop, number {n}"},
            "data": {"delivery": f"push:{n}"},
        }
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


@contextmanager
def server(command: list[str], port: int) -> Iterator[None]:
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield
    finally:
        child.terminate()
        child.wait(10)


async def build_shop(client: httpx.AsyncClient, headers: dict[str, str], users: int) -> None:
    rng = np.random.default_rng(3)
    words = ["tea", "coffee", "mug", "honey", "biscuit", "jam", "kettle", "cup"]
    items = [
        {
            "item_id": f"i{n}",
            "title": f"{words[n % 8].title()} no. {n}",
            "category": words[n % 8],
            "price": round(float(rng.uniform(2, 60)), 2),
            "currency": "EUR",
            "url": f"https://shop.example/p/i{n}",
            "image_url": f"https://cdn.shop.example/i{n}.jpg",
        }
        for n in range(400)
    ]
    await client.put("/v1/items", json=items, headers=headers)
    people = [
        {
            "user_id": f"u{n}",
            "email": f"user{n}@example.test",
            "locale": "zh-CN" if n % 5 == 0 else "en",
            "consents": {"email": True},
            "attributes": {"first_name": f"Name{n}"},
        }
        for n in range(users)
    ]
    for start in range(0, users, 1_000):
        await client.put("/v1/users", json=people[start : start + 1_000], headers=headers)
    now = time.time()
    events = [
        {
            "user_id": f"u{u}",
            "item_id": f"i{(u % 8) + 8 * int(rng.integers(0, 50))}",
            "event": str(rng.choice(["view", "add_to_cart", "purchase"], p=[0.7, 0.2, 0.1])),
            "timestamp": now - float(rng.uniform(3_600, 60 * 86_400)),
        }
        for u in range(users)
        for _ in range(12)
    ]
    for start in range(0, len(events), 10_000):
        await client.post("/v1/events", json=events[start : start + 10_000], headers=headers)


async def bare_smtp(port: int, messages: list[tuple[str, bytes]], connections: int) -> float:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)

    async def sender() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        while not queue.empty():
            to, raw = queue.get_nowait()
            await smtp.sendmail("shop@example.test", [to], raw)
        await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    return len(messages) / (time.perf_counter() - started)


async def deliver_all(ctx: Context, goal: int) -> None:
    """Run the delivery loop until `goal` messages in all are sent."""
    stop = asyncio.Event()
    loop = asyncio.create_task(ctx.messaging.sender.run("bench", stop, idle_seconds=0.01))
    while (await ctx.messaging.store.counts()).get("sent", 0) < goal:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    stop.set()
    await loop


async def ours_email(ctx: Context, users: list[str], run: str) -> float:
    """Render, store and deliver every user's email; messages per second, end to end."""
    composer = ctx.messaging.composer
    goal = (await ctx.messaging.store.counts()).get("sent", 0) + len(users)
    started = time.perf_counter()
    stop = asyncio.Event()
    loop = asyncio.create_task(ctx.messaging.sender.run("bench", stop, idle_seconds=0.01))
    for start in range(0, len(users), 100):
        recipients = await load_recipients(ctx.engine, ctx.cipher, users[start : start + 100])
        batch = []
        for r in recipients:
            key = f"bench:{run}:{r.user_id}"
            rendered = await composer.for_user(r, "recommended_for_you", "email", key=key, recommendations=6)
            batch.append(NewDelivery(key, "campaign", "email", rendered.payload, user_id=r.user_id))
            await asyncio.sleep(0)  # as requests that each render one would: sends go on meanwhile
        await ctx.messaging.store.add_many(batch)
    while (await ctx.messaging.store.counts()).get("sent", 0) < goal:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    await loop
    return len(users) / elapsed


async def ours_deliveries(ctx: Context, make: Callable[[int], NewDelivery], count: int) -> float:
    """Store `count` deliveries and run the delivery loop until they are sent; per second."""
    goal = (await ctx.messaging.store.counts()).get("sent", 0) + count
    started = time.perf_counter()
    await ctx.messaging.store.add_many(make(n) for n in range(count))
    await deliver_all(ctx, goal)
    return count / (time.perf_counter() - started)


def post_delivery(n: int) -> NewDelivery:
    return NewDelivery(f"post:{n}", "social", "x", post_body(n))


def push_delivery(n: int) -> NewDelivery:
    """The stored push whose FCM request is `push_body(n)`."""
    message = push_body(n)["message"]
    payload = {"tokens": [message["token"]], **message["notification"], "url": None, "data": message["data"]}
    return NewDelivery(f"push:{n}", "message", "push", payload)


Body = Callable[[int], dict[str, Any]]


def post_body(n: int) -> dict[str, Any]:
    return {"text": f"New in the shop, number {n}"}


async def bare_aiohttp(
    url: str, count: int, body: Body = post_body, headers: dict[str, str] | None = None
) -> float:
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        slots = asyncio.Semaphore(64)

        async def post(n: int) -> None:
            async with slots, session.post(url, json=body(n)) as r:
                await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(post(n) for n in range(count)))
        return count / (time.perf_counter() - started)


async def bare_httpx(
    url: str, count: int, body: Body = post_body, headers: dict[str, str] | None = None
) -> float:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:
        slots = asyncio.Semaphore(64)

        async def post(n: int) -> None:
            async with slots:
                await client.post(url, json=body(n))

        started = time.perf_counter()
        await asyncio.gather(*(post(n) for n in range(count)))
        return count / (time.perf_counter() - started)


async def run(args: argparse.Namespace, workdir: Path) -> list[tuple[str, float, str, float]]:
    smtp_port, x_port = free_port(), free_port()
    database = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    env = {
        "SHOPCAST_DATABASE_URL": database,
        "SHOPCAST_DATA_DIR": str(workdir / "var"),
        "SHOPCAST_SECRET_KEY": "bench-secret",
        "SHOPCAST_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?starttls=0&pool={args.connections}",
        "SHOPCAST_SEND_CONCURRENCY": str(max(args.connections, 64)),
        "SHOPCAST_X_TOKEN": "bench",
        "SHOPCAST_X_API_URL": f"http://127.0.0.1:{x_port}",
        "SHOPCAST_FCM_CREDENTIALS": str(workdir / "fcm.json"),
        "SHOPCAST_FCM_API_URL": f"http://127.0.0.1:{x_port}",
        "SHOPCAST_LOG_LEVEL": "WARNING",
    }
    service_account(workdir / "fcm.json", f"http://127.0.0.1:{x_port}/oauth2/token")
    settings = load_settings(env)
    app = create_app(settings)
    app.state.ctx = ctx = Context.create(settings)
    rows = []
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            key = await ctx.keys.create("bench", "admin")
            print("preparing the shop and its model", file=sys.stderr)
            await build_shop(client, {"Authorization": f"Bearer {key.secret}"}, args.emails)
        await train_and_publish(ctx, None, TrainConfig(seed=1, threads=1, max_eval_users=500))
        await ctx.serving.refresh()
        users = [f"u{n}" for n in range(args.emails)]
        servers = {  # the cheapest receiver (discards), and one that reads every message
            "sink": (smtp_port, "aiosmtpd.handlers.Sink"),
            "debugging": (free_port(), "aiosmtpd.handlers.Debugging"),
        }
        x_api = [sys.executable, "-c", PROVIDER_API, str(x_port)]
        with server(x_api, x_port):
            recipients = await load_recipients(ctx.engine, ctx.cipher, users)
            rendered = []
            started = time.perf_counter()
            for r in recipients:
                out = await ctx.messaging.composer.for_user(
                    r, "recommended_for_you", "email", key=f"pre:{r.user_id}", recommendations=6
                )
                rendered.append((out.payload["to"], out.payload["raw"].encode()))
            render_rate = len(rendered) / (time.perf_counter() - started)
            size = int(np.mean([len(raw) for _, raw in rendered]))
            for label, (port, handler) in servers.items():
                print(f"emails to an aiosmtpd {label} server", file=sys.stderr)
                command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", handler]
                with server(command, port):
                    url = f"smtp://127.0.0.1:{port}?starttls=0&pool={args.connections}"
                    ctx.messaging.channels["email"] = SmtpChannel(SmtpConfig.from_url(url))
                    await ours_email(ctx, users[:200], f"warm-{label}")  # connections, caches, pages
                    before = await bare_smtp(port, rendered, args.connections)
                    ours = await ours_email(ctx, users, label)
                    bare = (before + await bare_smtp(port, rendered, args.connections)) / 2
                    await ctx.messaging.channels["email"].close()
                what = f"emails ({size:,} B, 6 items) to {label}, {args.connections} conn."
                rows.append((what, ours, "bare aiosmtplib", bare))
            rows.append(("  of which: render + MIME alone", render_rate, "", 0.0))
            base = f"http://127.0.0.1:{x_port}"
            http_cases = [
                ("social posts (X API shape)", f"{base}/2/tweets", post_body, post_delivery, {}),
                (
                    "pushes (FCM v1 shape)",
                    f"{base}/v1/projects/bench/messages:send",
                    push_body,
                    push_delivery,
                    {"Authorization": "Bearer bench-access"},
                ),
            ]
            for what, url, body, delivery, headers in http_cases:
                print(what, file=sys.stderr)
                aio = await bare_aiohttp(url, args.posts, body, headers)
                hx = await bare_httpx(url, args.posts, body, headers)
                ours = await ours_deliveries(ctx, delivery, args.posts)
                best, name = max((aio, "bare aiohttp"), (hx, "bare httpx"))
                rows.append((f"{what}, 64 connections", ours, name, best))
                other = "bare httpx" if name == "bare aiohttp" else "bare aiohttp"
                rows.append(("", 0.0, other, min(aio, hx)))
    finally:
        await ctx.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emails", type=int, default=2_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--posts", type=int, default=3_000)
    args = parser.parse_args()
    os.environ.setdefault("SHOPCAST_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        upgrade(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        rows = asyncio.run(run(args, Path(tmp)))
    print(f"\n{'what':<48} {'ours /s':>9}   {'baseline':<16} {'/s':>9} {'ours vs base':>12}")
    for what, ours, base_name, base in rows:
        ratio = f"{ours / base:.0%}" if ours and base else ""
        ours_text = f"{ours:,.0f}" if ours else ""
        base_text = f"{base:,.0f}" if base else ""
        print(f"{what:<48} {ours_text:>9}   {base_name:<16} {base_text:>9} {ratio:>12}")


if __name__ == "__main__":
    main()
