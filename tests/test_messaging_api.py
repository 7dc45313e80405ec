"""Messaging from the public API, against real local SMTP and provider servers, on both databases."""

from __future__ import annotations

import email
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from service.app import create_app
from service.context import Context
from service.storage.tables import deliveries, events
from tests.conftest import empty_tables, make_settings
from tests.fakes import SLOW, Answer, FakeProviders, FakeSmtp


@dataclass
class Shop:
    client: httpx.AsyncClient
    ctx: Context
    headers: dict[str, str]
    smtp: FakeSmtp
    providers: FakeProviders


ITEMS = [
    {"item_id": "tea", "title": "Green tea", "price": 4.5, "currency": "EUR", "url": "https://shop.test/tea"},
    {"item_id": "mug", "title": "Blue mug", "price": 12.0, "currency": "EUR", "url": "https://shop.test/mug"},
    {
        "item_id": "honey",
        "title": "Honey",
        "price": 7.25,
        "currency": "EUR",
        "url": "https://shop.test/honey",
    },
]
USERS = [
    {
        "user_id": "ana",
        "email": "ana@example.test",
        "push_tokens": ["tok-dead", "tok-live"],
        "locale": "en",
        "consents": {"email": True, "push": True},
        "attributes": {"first_name": "Ana"},
    },
    {"user_id": "li", "email": "li@example.test", "locale": "zh-CN", "attributes": {"first_name": "李"}},
    {"user_id": "nomail", "locale": "en"},
]


async def make_shop(
    tmp_path: Path, database_url: str, smtp: FakeSmtp | None, providers: FakeProviders, **more: str
) -> tuple[httpx.AsyncClient, Context, dict[str, str]]:
    await empty_tables(database_url)
    account = tmp_path / "fcm.json"
    account.write_text(json.dumps(providers.fcm_account()))
    base = providers.base
    extra = {
        "public_url": "https://shop.test",
        "send_backoff_seconds": "0",
        "fcm_credentials": str(account),
        "fcm_api_url": base,
        "x_token": FakeProviders.X_TOKEN,
        "x_api_url": base,
        "weibo_token": FakeProviders.WEIBO_TOKEN,
        "weibo_api_url": base,
        "wechat_app_id": FakeProviders.WECHAT_APP,
        "wechat_secret": FakeProviders.WECHAT_SECRET,
        "wechat_thumb_media_id": "THUMB",
        "wechat_api_url": base,
        "facebook_page_id": "4242",
        "facebook_token": FakeProviders.FACEBOOK_TOKEN,
        "facebook_api_url": base,
        "social_webhook_url": f"{base}/hooks/social",
        "social_webhook_secret": FakeProviders.WEBHOOK_SECRET,
        "http_timeout_seconds": "1",
    }
    if smtp is not None:
        extra["smtp_url"] = smtp.url
    settings = make_settings(tmp_path, database_url, **extra, **more)
    app = create_app(settings)
    app.state.ctx = ctx = Context.create(settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://shop.test")
    key = await ctx.keys.create("staff", "admin")
    headers = {"Authorization": f"Bearer {key.secret}"}
    assert (await client.put("/v1/items", json=ITEMS, headers=headers)).status_code == 200
    assert (await client.put("/v1/users", json=USERS, headers=headers)).status_code == 200
    await ctx.serving.refresh()
    return client, ctx, headers


@pytest.fixture
async def shop(
    tmp_path: Path, database_url: str, smtp: FakeSmtp, providers: FakeProviders
) -> AsyncIterator[Shop]:
    client, ctx, headers = await make_shop(tmp_path, database_url, smtp, providers)
    try:
        yield Shop(client, ctx, headers, smtp, providers)
    finally:
        await client.aclose()
        await ctx.close()


def send_body(user: str = "ana", template: str = "back_in_stock", **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "template": template, "items": ["tea"], "recommendations": 2, **extra}


async def send(shop: Shop, key: str, body: dict[str, Any]) -> httpx.Response:
    return await shop.client.post(
        "/v1/messages/send", json=body, headers={**shop.headers, "Idempotency-Key": key}
    )


def parsed(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


# -- templates --------------------------------------------------------------------------------


async def test_staff_templates_are_validated_versioned_and_shadow_shipped_ones(shop: Shop) -> None:
    c, h = shop.client, shop.headers
    broken = await c.post(
        "/v1/templates",
        json={
            "name": "welcome",
            "kind": "email",
            "parts": {"subject": "Hi", "html": "<p>\n{% if %}", "text": "x"},
        },
        headers=h,
    )
    assert broken.status_code == 422
    (problem,) = broken.json()["extra"]
    assert problem["key"] == "parts.html"
    assert problem["line"] == 2
    missing = await c.post(
        "/v1/templates", json={"name": "welcome", "kind": "push", "parts": {"title": "Hi"}}, headers=h
    )
    assert missing.status_code == 422
    assert missing.json()["extra"][0]["key"] == "parts.body"
    parts = {
        "subject": "Tea time, {{ user.first_name }}",
        "html": "<p>{{ item.title }}</p>",
        "text": "{{ item.title }}",
    }
    first = await c.post(
        "/v1/templates", json={"name": "back_in_stock", "kind": "email", "parts": parts}, headers=h
    )
    second = await c.post(
        "/v1/templates",
        json={"name": "back_in_stock", "kind": "email", "parts": parts, "note": "v2"},
        headers=h,
    )
    assert (first.status_code, first.json()["version"]) == (201, 1)
    assert (second.json()["version"], second.json()["note"]) == (2, "v2")
    chosen = await c.get("/v1/templates/email/back_in_stock", params={"locale": "zh-CN"}, headers=h)
    assert chosen.json()["source"] == "staff", "a staff template shadows the shipped one for every locale"
    shipped_push = await c.get("/v1/templates/push/back_in_stock", params={"locale": "zh-CN"}, headers=h)
    assert (shipped_push.json()["source"], shipped_push.json()["locale"]) == ("shipped", "zh-CN")
    versions = await c.get("/v1/templates/email/back_in_stock/versions", headers=h)
    assert [v["version"] for v in versions.json()] == [1, 2]
    listing = await c.get("/v1/templates", headers=h)
    kinds = {(t["kind"], t["name"], t["source"]) for t in listing.json()}
    assert ("email", "back_in_stock", "staff") in kinds
    assert ("email", "back_in_stock", "shipped") not in kinds
    assert ("email", "recommended_for_you", "shipped") in kinds
    unknown = await c.get("/v1/templates/email/nope", headers=h)
    assert unknown.status_code == 404


# -- preview ----------------------------------------------------------------------------------


async def test_preview_renders_for_the_users_locale_with_tracked_links(shop: Shop) -> None:
    c, h = shop.client, shop.headers
    en = await c.post(
        "/v1/messages/preview",
        json={"user_id": "ana", "template": "back_in_stock", "items": ["tea"]},
        headers=h,
    )
    zh = await c.post(
        "/v1/messages/preview",
        json={"user_id": "li", "template": "back_in_stock", "items": ["tea"]},
        headers=h,
    )
    assert en.status_code == 200, en.text
    assert en.json()["parts"]["subject"] == "Back in stock: Green tea"
    assert zh.json()["parts"]["subject"] == "到货提醒：Green tea"
    assert zh.json()["locale"] == "zh-CN"
    html = en.json()["parts"]["html"]
    assert "Good news, Ana" in html
    assert en.json()["parts"]["preheader"] == "Green tea is available again at €4.50."
    assert "https://shop.test/t/click?t=" in html
    assert "https://shop.test/tea" not in html, "item links are tracked"
    assert en.json()["items"][0] == "tea"


async def test_preview_names_the_missing_value_and_its_line(shop: Shop) -> None:
    parts = {"subject": "Hello", "html": "<p>Hi</p>\n<p>{{ user.attributes.loyalty_tier }}</p>", "text": "Hi"}
    answer = await shop.client.post(
        "/v1/messages/preview", json={"user_id": "ana", "parts": parts}, headers=shop.headers
    )
    assert answer.status_code == 422
    assert "loyalty_tier" in answer.json()["detail"]
    assert answer.json()["extra"][0]["line"] == 2


async def test_template_injection_is_refused_at_preview(shop: Shop) -> None:
    parts = {"subject": "{{ ''.__class__.__mro__[1].__subclasses__() }}", "html": "<p/>", "text": "x"}
    answer = await shop.client.post(
        "/v1/messages/preview", json={"user_id": "ana", "parts": parts}, headers=shop.headers
    )
    assert answer.status_code == 422
    assert "not allowed" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "key"),
    [
        ({"user_id": "ghost", "template": "back_in_stock"}, 404, None),
        ({"user_id": "ana", "template": "back_in_stock", "items": ["nope"]}, 422, "items"),
        ({"user_id": "ana"}, 400, "template"),
        ({"user_id": "ana", "template": "no_such_template"}, 404, None),
    ],
)
async def test_preview_refuses_what_it_cannot_render(
    shop: Shop, body: dict[str, Any], status: int, key: str | None
) -> None:
    answer = await shop.client.post("/v1/messages/preview", json=body, headers=shop.headers)
    assert answer.status_code == status, answer.text
    if key:
        assert answer.json()["extra"][0]["key"] == key


# -- transactional email ----------------------------------------------------------------------


async def test_a_send_goes_out_once_however_often_it_is_repeated(shop: Shop) -> None:
    first = await send(shop, "order-1", send_body())
    again = await send(shop, "order-1", send_body())
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "sent"
    assert first.json()["provider_id"]
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(shop.smtp.messages) == 1
    message = parsed(shop.smtp.messages[0][2])
    assert message["To"] == "ana@example.test"
    assert message["Subject"] == "Back in stock: Green tea"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<https://shop.test/u/unsubscribe?t=")
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    other = await send(shop, "order-1", send_body(template="price_drop"))
    assert other.status_code == 409, "the key was used for another message"
    status = await shop.client.get(f"/v1/messages/{first.json()['id']}", headers=shop.headers)
    assert status.json()["status"] == "sent"


async def test_send_refuses_without_a_key_an_address_or_consent(shop: Shop) -> None:
    no_key = await shop.client.post("/v1/messages/send", json=send_body(), headers=shop.headers)
    assert no_key.status_code == 400
    no_address = await send(shop, "k2", send_body(user="nomail"))
    assert no_address.status_code == 422
    assert "no email" in no_address.json()["detail"]
    await shop.client.put(
        "/v1/users", json=[{"user_id": "ana", "consents": {"email": False}}], headers=shop.headers
    )
    withdrawn = await send(shop, "k3", send_body())
    assert withdrawn.status_code == 422
    assert "consent" in withdrawn.json()["detail"]
    assert shop.smtp.messages == []
    async with shop.ctx.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(deliveries))).scalar() == 0


async def test_smtp_refusals_are_retried_then_delivered_or_failed(shop: Shop) -> None:
    shop.smtp.answer_data("451 4.3.0 Try again later")
    answer = await send(shop, "retry-1", send_body())
    assert answer.json()["status"] == "pending"
    assert "451" in answer.json()["error"]
    counts = await shop.ctx.messaging.sender.run_once("test-worker")
    assert counts == {"sent": 1}
    assert len(shop.smtp.messages) == 1
    shop.smtp.answer_rcpt("550 5.1.1 No such mailbox")
    refused = await send(shop, "refused-1", send_body())
    assert refused.json()["status"] == "failed"
    assert "550" in refused.json()["error"]
    assert await shop.ctx.messaging.sender.run_once("test-worker") == {}, "a permanent failure is not retried"


async def test_a_message_lost_in_flight_is_unknown_and_never_resent(shop: Shop) -> None:
    shop.smtp.answer_data("drop")
    answer = await send(shop, "lost-1", send_body())
    assert answer.json()["status"] == "unknown", answer.text
    await shop.ctx.messaging.sender.run_once("test-worker")
    assert len(shop.smtp.messages) == 1, "the server had it; nothing was sent again"


async def test_a_worker_that_died_mid_send_leaves_unknown_not_duplicates(shop: Shop) -> None:
    store = shop.ctx.messaging.store
    shop.smtp.answer_data("451 4.3.0 later")  # the API's own attempt leaves the row pending
    answer = await send(shop, "crash-1", send_body())
    assert answer.json()["status"] == "pending"
    (claimed,) = await store.claim("worker-that-dies", 10, claim_seconds=60)
    async with shop.ctx.engine.begin() as conn:  # it died: its claim runs out
        await conn.execute(update(deliveries).values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))
    assert await shop.ctx.messaging.sender.run_once("other-worker") == {}
    row = await store.get(claimed.id)
    assert row is not None
    assert row.status == "unknown"
    assert "in flight" in (row.error or "")
    assert not await store.record(claimed, "sent"), "the dead worker's late answer changes nothing"
    assert shop.smtp.messages == []


async def test_without_smtp_emails_go_to_the_outbox(
    tmp_path: Path, database_url: str, providers: FakeProviders
) -> None:
    client, ctx, headers = await make_shop(tmp_path, database_url, None, providers)
    try:
        answer = await client.post(
            "/v1/messages/send", json=send_body(user="li"), headers={**headers, "Idempotency-Key": "o1"}
        )
        assert answer.json()["status"] == "sent"
        (path,) = (tmp_path / "var" / "outbox").iterdir()
        assert answer.json()["provider_id"] == str(path)
        assert parsed(path.read_bytes())["Subject"] == "到货提醒：Green tea"
    finally:
        await client.aclose()
        await ctx.close()


# -- links ------------------------------------------------------------------------------------


def links_in(raw: bytes) -> list[str]:
    html = next(p for p in parsed(raw).iter_parts() if p.get_content_type() == "text/html").get_content()
    return [u.replace("&amp;", "&") for u in re.findall(r'href="([^"]+)"', html)]


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_one_click_unsubscribe_withdraws_consent(shop: Shop) -> None:
    await send(shop, "u-1", send_body())
    header = parsed(shop.smtp.messages[0][2])["List-Unsubscribe"].strip("<>")
    page = await shop.client.get(local(header))
    assert page.status_code == 200
    assert "<form" in page.text
    user = await shop.client.get("/v1/users/ana", headers=shop.headers)
    assert user.json()["consents"]["email"]["granted"] is True, "opening the link changes nothing"
    done = await shop.client.post(
        local(header),
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    assert "unsubscribed" in done.text
    user = await shop.client.get("/v1/users/ana", headers=shop.headers)
    assert user.json()["consents"]["email"]["granted"] is False
    assert (await send(shop, "u-2", send_body())).status_code == 422


async def test_forged_links_change_nothing(shop: Shop) -> None:
    await send(shop, "f-1", send_body())
    header = parsed(shop.smtp.messages[0][2])["List-Unsubscribe"].strip("<>")
    token = header.split("t=", 1)[1]
    payload, signature = token.split(".")
    forged = f"{payload[:-3]}AAA.{signature}"
    for path in (f"/u/unsubscribe?t={forged}", f"/t/click?t={forged}", f"/u/preferences?t={token}"):
        answer = await shop.client.post(path) if "unsubscribe" in path else await shop.client.get(path)
        assert answer.status_code == 400, path
    user = await shop.client.get("/v1/users/ana", headers=shop.headers)
    assert user.json()["consents"]["email"]["granted"] is True


async def test_a_click_is_recorded_and_redirects_to_the_item(shop: Shop) -> None:
    await send(shop, "c-1", send_body())
    click = next(u for u in links_in(shop.smtp.messages[0][2]) if "/t/click" in u)
    answer = await shop.client.get(local(click))
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://shop.test/tea"
    async with shop.ctx.engine.connect() as conn:
        rows = (await conn.execute(select(events.c.user_id, events.c.item_id, events.c.event))).all()
    assert [tuple(r) for r in rows] == [("ana", "tea", "click")]


async def test_the_preference_page_sets_every_channel(shop: Shop) -> None:
    await send(shop, "p-1", send_body())
    link = next(u for u in links_in(shop.smtp.messages[0][2]) if "/u/preferences" in u)
    page = await shop.client.get(local(link))
    assert page.status_code == 200
    assert 'name="email"' in page.text
    saved = await shop.client.post(local(link), data={"push": "1"})
    assert saved.status_code == 200
    consents = (await shop.client.get("/v1/users/ana", headers=shop.headers)).json()["consents"]
    assert {c: v["granted"] for c, v in consents.items()} == {
        "email": False,
        "push": True,
        "sms": False,
        "social": False,
    }


# -- push -------------------------------------------------------------------------------------


async def test_push_goes_through_fcm_and_drops_unregistered_tokens(shop: Shop) -> None:
    shop.providers.unregistered = {"tok-dead"}
    answer = await send(shop, "push-1", send_body(channel="push", template="back_in_stock"))
    assert answer.json()["status"] == "sent", answer.text
    sent = [c["message"] for c in shop.providers.calls["fcm"]]
    assert {m["token"] for m in sent} == {"tok-dead", "tok-live"}
    assert sent[0]["notification"] == {"title": "Back in stock", "body": "Green tea is available again."}
    assert sent[0]["webpush"]["fcm_options"]["link"].startswith("https://shop.test/t/click?t=")
    user = await shop.client.get("/v1/users/ana", headers=shop.headers)
    assert user.json()["push_tokens"] == ["tok-live"]


async def test_push_rate_limit_waits_as_long_as_fcm_says(shop: Shop) -> None:
    shop.providers.script(
        "fcm", Answer(429, {"error": {"status": "RESOURCE_EXHAUSTED"}}, {"Retry-After": "30"})
    )
    shop.providers.script(
        "fcm", Answer(429, {"error": {"status": "RESOURCE_EXHAUSTED"}}, {"Retry-After": "30"})
    )
    answer = await send(shop, "push-2", send_body(channel="push"))
    body = answer.json()
    assert body["status"] == "pending"
    wait = datetime.fromisoformat(body["next_attempt_at"]) - datetime.now(UTC)
    assert timedelta(seconds=25) < wait < timedelta(seconds=35)


# -- social -----------------------------------------------------------------------------------


async def test_a_post_goes_to_every_channel_with_their_ids(shop: Shop) -> None:
    body = {
        "channels": ["x", "weibo", "wechat", "facebook", "webhook"],
        "items": ["tea", "mug"],
        "locale": "zh-CN",
        "variants": {"x": {"text": "New: green tea and a blue mug"}},
    }
    answer = await shop.client.post("/v1/social/posts", json=body, headers=shop.headers)
    assert answer.status_code == 201, answer.text
    post = answer.json()
    assert {d["channel"]: d["status"] for d in post["deliveries"]} == dict.fromkeys(body["channels"], "sent")
    assert all(d["provider_id"] for d in post["deliveries"])
    calls = shop.providers.calls
    assert calls["x"][0]["text"].startswith("New: green tea and a blue mug https://shop.test/t/click?t=")
    assert calls["weibo"][0]["status"].startswith("本周精选：Green tea、Blue mug")
    assert calls["wechat_draft"][0]["articles"][0]["title"].endswith("本周精选")
    assert calls["facebook"][0]["page"] == "4242"
    assert calls["hook_social"][0]["message"]["text"].startswith("本周精选")
    again = await shop.client.get(f"/v1/social/posts/{post['id']}", headers=shop.headers)
    assert again.json() == post


async def test_a_post_too_long_for_one_channel_is_refused_naming_the_limit(shop: Shop) -> None:
    body = {"channels": ["facebook", "x"], "items": ["tea"], "variants": {"x": {"text": "茶" * 140}}}
    answer = await shop.client.post("/v1/social/posts", json=body, headers=shop.headers)
    assert answer.status_code == 422
    problem = answer.json()["extra"][0]
    assert problem["key"] == "x.text"
    assert "280" in problem["message"]
    assert shop.providers.calls["facebook"] == [], "nothing went out on the other channel either"
    async with shop.ctx.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(deliveries))).scalar() == 0


async def test_scheduled_posts_wait_for_their_time(shop: Shop) -> None:
    past = await shop.client.post(
        "/v1/social/posts",
        json={"channels": ["x"], "items": ["tea"], "scheduled_at": "2020-01-01T00:00:00Z"},
        headers=shop.headers,
    )
    assert past.status_code == 422
    assert past.json()["extra"][0]["key"] == "scheduled_at"
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    answer = await shop.client.post(
        "/v1/social/posts",
        json={"channels": ["x"], "items": ["tea"], "scheduled_at": soon},
        headers=shop.headers,
    )
    post = answer.json()
    assert post["deliveries"][0]["status"] == "pending"
    assert shop.providers.calls["x"] == []
    assert await shop.ctx.messaging.sender.run_once("w") == {}, "not due yet"
    async with shop.ctx.engine.begin() as conn:
        await conn.execute(update(deliveries).values(next_attempt_at=datetime.now(UTC)))
    assert await shop.ctx.messaging.sender.run_once("w") == {"sent": 1}
    assert len(shop.providers.calls["x"]) == 1


async def test_a_post_whose_answer_never_came_is_not_posted_twice(shop: Shop) -> None:
    shop.providers.script("x", SLOW)
    answer = await shop.client.post(
        "/v1/social/posts", json={"channels": ["x"], "items": ["honey"]}, headers=shop.headers
    )
    assert answer.json()["deliveries"][0]["status"] == "unknown"
    await shop.ctx.messaging.sender.run_once("w")
    assert len(shop.providers.calls["x"]) == 1


async def test_a_channel_without_credentials_is_refused(
    tmp_path: Path, database_url: str, providers: FakeProviders
) -> None:
    settings = make_settings(tmp_path, database_url)
    await empty_tables(database_url)
    app = create_app(settings)
    app.state.ctx = ctx = Context.create(settings)
    key = await ctx.keys.create("staff", "campaigns:write")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answer = await client.post(
            "/v1/social/posts",
            json={"channels": ["weibo"], "variants": {"weibo": {"text": "hello https://s.t"}}},
            headers={"Authorization": f"Bearer {key.secret}"},
        )
    await ctx.close()
    assert answer.status_code == 422
    assert "not configured" in answer.json()["detail"]


async def test_shopcast_worker_delivers_what_is_due_and_stops_cleanly(
    tmp_path: Path, database_url: str, providers: FakeProviders
) -> None:
    import asyncio
    import os
    import signal
    import sys

    client, ctx, headers = await make_shop(tmp_path, database_url, None, providers)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    try:
        answer = await client.post(
            "/v1/social/posts",
            json={"channels": ["webhook"], "items": ["tea"], "scheduled_at": soon},
            headers=headers,
        )
        assert answer.json()["deliveries"][0]["status"] == "pending"
        env = {
            **os.environ,
            "SHOPCAST_DATABASE_URL": database_url,
            "SHOPCAST_DATA_DIR": str(tmp_path / "var"),
            "SHOPCAST_SECRET_KEY": "test-secret-key-not-for-production",
            "SHOPCAST_RETRAIN_CRON": "",
            "SHOPCAST_SOCIAL_WEBHOOK_URL": f"{providers.base}/hooks/social",
            "SHOPCAST_SOCIAL_WEBHOOK_SECRET": FakeProviders.WEBHOOK_SECRET,
        }
        shopcast = str(Path(sys.executable).with_name("shopcast"))
        worker = await asyncio.create_subprocess_exec(
            shopcast, "worker", env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            for _ in range(150):
                if providers.calls["hook_social"]:
                    break
                await asyncio.sleep(0.1)
            post = await client.get(f"/v1/social/posts/{answer.json()['id']}", headers=headers)
            for _ in range(50):
                if post.json()["deliveries"][0]["status"] == "sent":
                    break
                await asyncio.sleep(0.1)
                post = await client.get(f"/v1/social/posts/{answer.json()['id']}", headers=headers)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, raw = await asyncio.wait_for(worker.communicate(), timeout=20)
            stderr = raw.decode()
        assert len(providers.calls["hook_social"]) == 1, stderr
        assert post.json()["deliveries"][0]["status"] == "sent"
        assert worker.returncode == 0, stderr
        assert "worker stopped" in stderr
        assert "webhook" in stderr
    finally:
        await client.aclose()
        await ctx.close()


async def test_a_user_id_with_a_control_character_is_refused_not_a_server_error(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Found by the OpenAPI fuzzer: `\\S` lets NUL through, and PostgreSQL refuses NUL in text."""
    response = await client.post(
        "/v1/messages/preview", json={"user_id": "a\x00b", "template": "x"}, headers=admin
    )
    assert response.status_code == 400
    assert "user_id" in response.text
