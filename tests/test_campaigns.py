"""Campaigns from the public API, on both databases, against real SMTP and provider servers."""

from __future__ import annotations

import asyncio
import email
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select, update

from service.campaigns.definition import SendWindow, in_holdout, next_send_time
from service.context import Context
from service.storage.tables import campaign_recipients, campaigns, deliveries, user_consents, users
from tests.fakes import FakeProviders, FakeSmtp
from tests.test_messaging_api import Shop, make_shop

NOW = time.time()
CATEGORIES = {"tea": "tea", "mug": "kitchen", "honey": "pantry"}


def person(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "user_id": f"p{n:03d}",
        "email": f"p{n:03d}@example.test",
        "push_tokens": [f"tok-{n}"],
        "locale": "en",
        "timezone": "Europe/Paris",
        "consents": {"email": True, "push": True},
        "attributes": {"first_name": f"P{n}", "city": "Lyon" if n % 2 else "Paris"},
        **extra,
    }


def event(user: str, item: str, kind: str, days_ago: float, **extra: Any) -> dict[str, Any]:
    at = (time.time() if days_ago <= 0 else NOW) - days_ago * 86_400
    return {"user_id": user, "item_id": item, "event": kind, "timestamp": at, **extra}


async def campaign_shop(
    tmp_path: Path, database_url: str, smtp: FakeSmtp, providers: FakeProviders, **settings: str
) -> Shop:
    """The messaging tests' shop (SMTP, FCM, X, …) with categorized items and no users yet."""
    client, ctx, headers = await make_shop(tmp_path, database_url, smtp, providers, **settings)
    async with ctx.engine.begin() as conn:
        await conn.execute(delete(user_consents))
        await conn.execute(delete(users))
    items = [{"item_id": i, "title": i.title(), "category": c} for i, c in CATEGORIES.items()]
    assert (await client.put("/v1/items", json=items, headers=headers)).status_code == 200
    return Shop(client, ctx, headers, smtp, providers)


@pytest.fixture
async def shop(
    tmp_path: Path, database_url: str, smtp: FakeSmtp, providers: FakeProviders
) -> AsyncIterator[Shop]:
    made = await campaign_shop(tmp_path, database_url, smtp, providers)
    try:
        yield made
    finally:
        await made.client.aclose()
        await made.ctx.close()


async def add_people(shop: Shop, people: list[dict[str, Any]], history: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    answer = await shop.client.put("/v1/users", json=people, headers=shop.headers)
    assert answer.status_code == 200, answer.text
    if history:
        answer = await shop.client.post("/v1/events", json=list(history), headers=shop.headers)
        assert answer.status_code in (200, 202), answer.text
    await shop.ctx.serving.refresh()


async def create(shop: Shop, **body: Any) -> dict[str, Any]:
    body = {"name": "test campaign", "channels": ["email"], "holdout": 0.0, "recommendations": 2, **body}
    answer = await shop.client.post("/v1/campaigns", json=body, headers=shop.headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def launch(shop: Shop, campaign_id: int) -> dict[str, Any]:
    answer = await shop.client.post(f"/v1/campaigns/{campaign_id}/launch", headers=shop.headers)
    assert answer.status_code == 200, answer.text
    launched: dict[str, Any] = answer.json()
    return launched


async def drive(ctx: Context, campaign_id: int, rounds: int = 200) -> str:
    """Run the worker's steps in-process until the campaign leaves `running` (or rounds run out)."""
    status = ""
    for _ in range(rounds):
        await ctx.campaigns.runner.tick()
        await ctx.messaging.sender.run_once("test-worker")
        status = (await ctx.campaigns.store.get(campaign_id)).status
        if status not in ("scheduled", "running"):
            return status
    return status


async def report(shop: Shop, campaign_id: int) -> dict[str, Any]:
    answer = await shop.client.get(f"/v1/campaigns/{campaign_id}/report", headers=shop.headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def recipients_at(smtp: FakeSmtp) -> Counter[str]:
    return Counter(to for _, tos, _ in smtp.messages for to in tos)


# -- audiences --------------------------------------------------------------------------------


async def estimate(shop: Shop, rules: dict[str, Any]) -> int:
    answer = await shop.client.post("/v1/audiences/estimate", json={"rules": rules}, headers=shop.headers)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["users"])


async def test_each_audience_rule_selects_the_users_it_describes(shop: Shop) -> None:
    people = [person(n) for n in range(1, 7)]
    people[2]["consents"] = {"email": False}
    people[3]["locale"] = "zh-CN"
    people[4]["attributes"] = {"vip": "gold"}
    history = [
        event("p001", "tea", "view", 2),
        event("p001", "tea", "view", 1),
        event("p002", "tea", "view", 3),
        event("p002", "tea", "purchase", 2, channel="store", price=4.5),
        event("p003", "mug", "view", 40),
        event("p004", "honey", "purchase", 10, channel="web", price=7.25),
        event("p004", "honey", "purchase", 5, channel="store", price=7.25),
        event("p005", "honey", "purchase", 3, channel="web", price=7.25),
    ]
    await add_people(shop, people, history)
    viewed_tea_not_bought = {
        "all": [
            {"event": "view", "category": "tea", "within_days": 7},
            {"not": {"event": "purchase", "category": "tea", "within_days": 7}},
        ]
    }
    assert await estimate(shop, viewed_tea_not_bought) == 1  # p001
    assert await estimate(shop, {"event": "view", "item": "tea", "min_count": 2}) == 1
    assert await estimate(shop, {"event": "purchase", "item": "honey"}) == 2
    assert await estimate(shop, {"inactive_days": 30}) == 2  # p003 (40 days ago) and p006 (nothing)
    assert await estimate(shop, {"last_purchase_channel": "store"}) == 2  # p002, p004 (latest is store)
    assert await estimate(shop, {"last_purchase_channel": "web"}) == 1  # p005
    assert await estimate(shop, {"consent": "email"}) == 5
    assert await estimate(shop, {"attribute": "locale", "equals": "zh-CN"}) == 1
    assert await estimate(shop, {"attribute": "city", "in": ["Lyon"]}) == 2  # p001, p003 (p005: vip only)
    assert await estimate(shop, {"attribute": "vip", "exists": True}) == 1
    assert await estimate(shop, {"any": [{"attribute": "vip", "exists": True}, {"consent": "push"}]}) == 5
    answer = await shop.client.post(
        "/v1/audiences/estimate", json={"rules": {"consent": "email"}}, headers=shop.headers
    )
    assert answer.json()["with_consent"]["email"] == 5


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ({"evnt": "view"}, "rules"),
        ({"event": "vew"}, "rules.event"),
        ({"all": [{"consent": "email"}, {"attribute": "city"}]}, "rules.all[1]"),
        ({"all": []}, "rules.all"),
        ({"not": {"inactive_days": 0}}, "rules.not.inactive_days"),
        ({"event": "view", "within_days": "7"}, "rules.within_days"),
        ({"affinity": {"brand": "x"}}, "rules.affinity"),
    ],
)
async def test_audience_rules_that_name_unknown_fields_are_refused_with_the_path(
    shop: Shop, rules: dict[str, Any], path: str
) -> None:
    answer = await shop.client.post(
        "/v1/audiences", json={"name": "bad", "rules": rules}, headers=shop.headers
    )
    assert answer.status_code == 422, answer.text
    keys = [e["key"] for e in answer.json()["extra"]]
    assert path in keys, answer.json()
    assert (await shop.client.get("/v1/audiences", headers=shop.headers)).json() == []


async def test_saved_audiences_are_listed_estimated_and_protected_while_in_use(shop: Shop) -> None:
    await add_people(shop, [person(1), person(2)])
    made = await shop.client.post(
        "/v1/audiences", json={"name": "all mail", "rules": {"consent": "email"}}, headers=shop.headers
    )
    assert made.status_code == 201
    audience_id = made.json()["id"]
    again = await shop.client.post(
        "/v1/audiences", json={"name": "all mail", "rules": {"consent": "push"}}, headers=shop.headers
    )
    assert again.status_code == 409
    sized = await shop.client.get(f"/v1/audiences/{audience_id}/estimate", headers=shop.headers)
    assert sized.json()["users"] == 2
    await create(shop, audience_id=audience_id)
    busy = await shop.client.delete(f"/v1/audiences/{audience_id}", headers=shop.headers)
    assert busy.status_code == 409


# -- a campaign end to end --------------------------------------------------------------------


async def test_a_campaign_runs_on_email_push_and_social_and_reports_what_happened(shop: Shop) -> None:
    people = [person(n) for n in range(1, 41)]
    people[0]["consents"] = {"email": False, "push": True}  # p001: push only
    people[1].pop("email")  # p002: no address
    await add_people(shop, people, [event(p["user_id"], "tea", "view", 1) for p in people])
    campaign = await create(
        shop,
        channels=["email", "push", "x"],
        audience={"consent": "push"},
        holdout=0.25,
        items=["honey"],
    )
    assert campaign["status"] == "draft"
    launched = await launch(shop, campaign["id"])
    assert launched["status"] == "scheduled"
    assert await drive(shop.ctx, campaign["id"]) == "completed"

    held = {p["user_id"] for p in people if in_holdout(campaign["id"], p["user_id"], 0.25)}
    assert 3 <= len(held) <= 20
    mailed = {p["email"] for p in people if p.get("email") and p["user_id"] not in held | {"p001"}}
    at_server = recipients_at(shop.smtp)
    assert set(at_server) == mailed
    assert max(at_server.values()) == 1
    pushed = {call["message"]["token"] for call in shop.providers.calls["fcm"]}
    assert pushed == {f"tok-{int(p['user_id'][1:])}" for p in people if p["user_id"] not in held}
    assert len(shop.providers.calls["x"]) == 1

    raw = next(raw for _, tos, raw in shop.smtp.messages)
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Honey" in html
    assert "/t/open?t=" in html

    r = await report(shop, campaign["id"])
    f = r["funnel"]
    assert f["audience"] == 40
    assert f["holdout"] == len(held)
    assert f["sent"] == len(mailed) + len(pushed) + 1
    assert f["skipped"] == {"no_consent": 1, "no_address": 1}  # judged before the holdout is drawn
    assert r["lift"]["holdout"]["users"] == len(held)
    assert r["lift"]["treated"]["users"] == 40 - len(held)


async def test_clicks_opens_unsubscribes_and_attributed_purchases_reach_the_report(shop: Shop) -> None:
    people = [person(n) for n in range(1, 11)]
    await add_people(shop, people)
    campaign = await create(shop, audience={"consent": "email"}, items=["tea"])
    await launch(shop, campaign["id"])
    assert await drive(shop.ctx, campaign["id"]) == "completed"

    def link(raw: bytes, path: str) -> str:
        html = email.message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()  # type: ignore[union-attr]
        start = html.index(f"https://shop.test{path}?t=")
        return html[start : html.index('"', start)].replace("&amp;", "&")

    by_user = {tos[0].split("@")[0]: raw for _, tos, raw in shop.smtp.messages}
    c = shop.client
    click = urlsplit(link(by_user["p001"], "/t/click"))
    assert (await c.get(f"{click.path}?{click.query}")).status_code == 302
    opened = urlsplit(link(by_user["p002"], "/t/open"))
    pixel = await c.get(f"{opened.path}?{opened.query}")
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    token = parse_qs(opened.query)["t"][0]
    forged = await c.get("/t/open", params={"t": token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")})
    assert forged.status_code == 400
    unsubscribe = email.message_from_bytes(by_user["p003"], policy=policy.default)["List-Unsubscribe"]
    target = urlsplit(unsubscribe.strip("<>"))
    done = await c.post(f"{target.path}?{target.query}", content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200

    # p001 clicked and bought within the window; p004 bought without a click (the send is the touch)
    bought = await c.post(
        "/v1/events",
        json=[
            event("p001", "tea", "purchase", 0, price=4.5, quantity=2),
            event("p004", "mug", "purchase", 0, price=12.0),
            event("p005", "mug", "purchase", -0.5, price=99.0),  # not yet: in the future
        ],
        headers=shop.headers,
    )
    assert bought.status_code in (200, 202), bought.text
    r = await report(shop, campaign["id"])
    f = r["funnel"]
    assert (f["clicked"], f["opened"], f["unsubscribed"]) == (1, 1, 1)
    assert f["converted"] == 2, (f["converted"], f["revenue"], r["variants"][0])
    assert f["revenue"] == pytest.approx(21.0)


# -- rules that hold recipients back ----------------------------------------------------------


async def test_the_frequency_cap_holds_across_campaigns(
    tmp_path: Path, database_url: str, smtp: FakeSmtp, providers: FakeProviders
) -> None:
    shop = await campaign_shop(tmp_path, database_url, smtp, providers, frequency_cap="1/7d")
    client, ctx, headers = shop.client, shop.ctx, shop.headers
    try:
        await add_people(shop, [person(n) for n in range(1, 6)])
        first = await create(shop, audience={"consent": "email"})
        await launch(shop, first["id"])
        assert await drive(ctx, first["id"]) == "completed"
        second = await create(shop, audience={"consent": "email"}, name="second")
        dry = (await client.post(f"/v1/campaigns/{second['id']}/dry-run", headers=headers)).json()
        assert dry["skipped"] == {"capped": 5}
        assert dry["treated"] == {}
        exempt = await create(shop, audience={"consent": "email"}, name="service notice", frequency_cap=False)
        await launch(shop, second["id"])
        await launch(shop, exempt["id"])
        assert await drive(ctx, second["id"]) == "completed"
        assert await drive(ctx, exempt["id"]) == "completed"
        assert (await report(shop, second["id"]))["funnel"]["skipped"] == {"capped": 5}
        assert max(recipients_at(smtp).values()) == 2  # the first campaign, and the exempt one
    finally:
        await client.aclose()
        await ctx.close()


def test_send_windows_open_in_each_recipients_local_time() -> None:
    window = SendWindow(start="09:00", end="21:00")
    now = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # Paris 00:30, Tokyo 08:30, New York 18:30
    assert next_send_time(window, ZoneInfo("America/New_York"), now) == now
    assert next_send_time(window, ZoneInfo("Asia/Tokyo"), now) == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    assert next_send_time(window, ZoneInfo("Europe/Paris"), now) == datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    overnight = SendWindow(start="22:00", end="02:00")
    assert next_send_time(overnight, ZoneInfo("Europe/Paris"), now) == now  # 00:30 is inside
    assert next_send_time(None, ZoneInfo("Asia/Tokyo"), now) == now


async def test_quiet_hours_delay_each_recipient_to_their_own_morning(shop: Shop) -> None:
    zones = ["Pacific/Kiritimati", "Pacific/Pago_Pago"]  # UTC+14 and UTC-11: never both awake
    await add_people(shop, [person(n, timezone=zones[n % 2]) for n in range(1, 5)])
    local_now = {z: datetime.now(UTC).astimezone(ZoneInfo(z)) for z in zones}
    campaign = await create(
        shop, audience={"consent": "email"}, send_window={"start": "09:00", "end": "10:00"}
    )
    await launch(shop, campaign["id"])
    await shop.ctx.campaigns.runner.tick()
    async with shop.ctx.engine.connect() as conn:
        rows = (await conn.execute(select(deliveries.c.user_id, deliveries.c.next_attempt_at))).all()
    assert len(rows) == 4
    for user_id, due in rows:
        zone = zones[int(user_id[1:]) % 2]
        local = due.astimezone(ZoneInfo(zone))
        if 9 <= local_now[zone].hour < 10:
            assert due <= datetime.now(UTC)
        else:
            assert (local.hour, local.minute) == (9, 0)
            assert due > datetime.now(UTC)


async def test_the_holdout_is_the_same_users_in_every_run(shop: Shop) -> None:
    await add_people(shop, [person(n) for n in range(1, 61)])
    campaign = await create(shop, audience={"consent": "email"}, holdout=0.3, cron="0 9 * * *")
    await launch(shop, campaign["id"])
    async with shop.ctx.engine.begin() as conn:
        await conn.execute(update(campaigns).values(next_run_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert await drive(shop.ctx, campaign["id"], rounds=30) == "scheduled"  # run 1 done, waits for 9:00
    async with shop.ctx.engine.begin() as conn:
        await conn.execute(update(campaigns).values(next_run_at=datetime.now(UTC) - timedelta(seconds=1)))
    await shop.ctx.campaigns.runner.tick()
    assert (await shop.ctx.campaigns.store.get(campaign["id"])).run == 2
    await drive(shop.ctx, campaign["id"], rounds=30)
    async with shop.ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(campaign_recipients.c.run, campaign_recipients.c.user_id).where(
                    campaign_recipients.c.outcome == "holdout"
                )
            )
        ).all()
    first = {u for run, u in rows if run == 1}
    second = {u for run, u in rows if run == 2}
    assert first == second
    assert 8 <= len(first) <= 30


# -- faults -----------------------------------------------------------------------------------


async def test_a_template_that_fails_for_some_users_skips_them_and_the_campaign_goes_on(shop: Shop) -> None:
    template = {
        "name": "vip_only",
        "kind": "email",
        "parts": {
            "subject": "For {{ user.attributes.tier.upper() }} members",
            "html": "<p>{{ user.first_name }}</p>",
            "text": "{{ user.first_name }}",
        },
    }
    assert (await shop.client.post("/v1/templates", json=template, headers=shop.headers)).status_code == 201
    people = [person(n) for n in range(1, 5)]
    people[0]["attributes"] = {"first_name": "Vi", "tier": "gold"}
    await add_people(shop, people)
    campaign = await create(shop, audience={"consent": "email"}, templates={"email": "vip_only"})
    await launch(shop, campaign["id"])
    assert await drive(shop.ctx, campaign["id"]) == "completed"
    assert set(recipients_at(shop.smtp)) == {"p001@example.test"}
    r = await report(shop, campaign["id"])
    assert r["funnel"]["skipped"] == {"render_failed": 3}
    assert r["funnel"]["sent"] == 1


async def test_an_smtp_server_refusing_everything_pauses_the_campaign_before_it_burns_the_audience(
    shop: Shop,
) -> None:
    await add_people(shop, [person(n) for n in range(1, 81)])
    shop.smtp.answer_rcpt(*["550 5.7.1 relaying denied"] * 200)
    campaign = await create(shop, audience={"consent": "email"})
    await launch(shop, campaign["id"])
    assert await drive(shop.ctx, campaign["id"]) == "paused"
    found = await shop.ctx.campaigns.store.get(campaign["id"])
    assert found.status_reason is not None
    assert "error budget" in found.status_reason
    r = await report(shop, campaign["id"])
    assert 20 <= r["funnel"]["failed"] < 80
    assert r["funnel"]["waiting"] == 80 - r["funnel"]["failed"]
    shop.smtp.handler.rcpt_answers.clear()
    resumed = await shop.client.post(f"/v1/campaigns/{campaign['id']}/resume", headers=shop.headers)
    assert resumed.json()["status"] == "running"
    assert await drive(shop.ctx, campaign["id"]) == "completed"
    assert len(recipients_at(shop.smtp)) == 80 - r["funnel"]["failed"]


async def test_lifecycle_conflicts_and_bad_schedules_are_refused_clearly(shop: Shop) -> None:
    await add_people(shop, [person(1)])
    c, h = shop.client, shop.headers
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    bad = await c.post(
        "/v1/campaigns",
        json={"name": "x", "channels": ["email"], "audience": {"consent": "email"}, "send_at": past},
        headers=h,
    )
    assert bad.status_code == 422
    assert bad.json()["extra"][0]["key"] == "send_at"
    for field, value in (("cron", "0 0 31 2 *"), ("timezone", "America"), ("cron", "every day")):
        refused = await c.post(
            "/v1/campaigns",
            json={"name": "x", "channels": ["email"], "audience": {"consent": "email"}, field: value},
            headers=h,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["extra"][0]["key"] == field
    nobody = await c.post("/v1/campaigns", json={"name": "x", "channels": ["email"]}, headers=h)
    assert nobody.status_code == 422
    assert nobody.json()["extra"][0]["key"] == "audience"
    unknown = await c.post(
        "/v1/campaigns", json={"name": "x", "channels": ["email"], "audience_id": 999}, headers=h
    )
    assert unknown.status_code == 404
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    campaign = await create(shop, audience={"consent": "email"}, send_at=later)
    cid = campaign["id"]
    assert (await c.post(f"/v1/campaigns/{cid}/resume", headers=h)).status_code == 409
    assert (await launch(shop, cid))["status"] == "scheduled"
    assert (await c.post(f"/v1/campaigns/{cid}/launch", headers=h)).status_code == 409
    await shop.ctx.campaigns.runner.tick()
    assert (await shop.ctx.campaigns.store.get(cid)).run == 0, "not due until tomorrow"
    assert (await c.post(f"/v1/campaigns/{cid}/pause", headers=h)).json()["status"] == "paused"
    assert (await c.post(f"/v1/campaigns/{cid}/resume", headers=h)).json()["status"] == "scheduled"
    assert (await c.post(f"/v1/campaigns/{cid}/cancel", headers=h)).json()["status"] == "cancelled"
    assert (await c.post(f"/v1/campaigns/{cid}/launch", headers=h)).status_code == 409
    assert (await c.get("/v1/campaigns/424242", headers=h)).status_code == 404


async def test_preview_and_test_send_show_the_message_before_launch(shop: Shop) -> None:
    await add_people(shop, [person(1)])
    campaign = await create(shop, audience={"consent": "email"}, items=["mug"])
    c, h = shop.client, shop.headers
    preview = await c.post(f"/v1/campaigns/{campaign['id']}/preview", json={"user_id": "p001"}, headers=h)
    assert preview.status_code == 200, preview.text
    assert "Mug" in preview.json()["parts"]["html"]
    sent = await c.post(
        f"/v1/campaigns/{campaign['id']}/test-send",
        json={"addresses": ["staff@shop.test"], "user_id": "p001"},
        headers=h,
    )
    assert sent.status_code == 202
    assert sent.json()[0]["status"] == "sent"
    assert recipients_at(shop.smtp) == Counter({"staff@shop.test": 1})
    assert (await report(shop, campaign["id"]))["funnel"]["sent"] == 0


async def test_reports_are_readable_with_analytics_scope_and_writes_need_campaigns_scope(
    shop: Shop,
) -> None:
    await add_people(shop, [person(1)])
    campaign = await create(shop, audience={"consent": "email"})
    key = await shop.ctx.keys.create("analyst", "analytics:read")
    analyst = {"Authorization": f"Bearer {key.secret}"}
    assert (
        await shop.client.get(f"/v1/campaigns/{campaign['id']}/report", headers=analyst)
    ).status_code == 200
    assert (
        await shop.client.post(f"/v1/campaigns/{campaign['id']}/launch", headers=analyst)
    ).status_code == 403


async def wait_for(check: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


# -- attribution and lift, against hand-computed cases ----------------------------------------


def test_last_touch_attribution_respects_the_window_and_prefers_clicks() -> None:
    from service.campaigns.report import attributed

    t0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
    day = timedelta(days=1)
    window = 5 * day
    sends = [(t0, 7), (t0 + day, 8)]
    clicks = [(t0 + 2 * day, 7)]
    # bought after campaign 7's click: campaign 7's, though 8 was the latest send
    assert attributed(7, [(t0 + 3 * day, 10.0)], clicks, sends, window) == (True, 10.0)
    assert attributed(8, [(t0 + 3 * day, 10.0)], clicks, sends, window) == (False, 0.0)
    # no click: the latest send within the window
    assert attributed(8, [(t0 + 3 * day, 5.0)], [], sends, window) == (True, 5.0)
    # the click is older than the window: the latest send (8) is 6 days old too: nobody's
    late = t0 + 2 * day + window + timedelta(seconds=1)
    assert attributed(7, [(late, 5.0)], clicks, sends, window) == (False, 0.0)
    assert attributed(8, [(late, 5.0)], clicks, sends, window) == (False, 0.0)
    # a purchase before any touch belongs to no campaign
    assert attributed(7, [(t0 - day, 5.0)], clicks, sends, window) == (False, 0.0)


def test_lift_and_its_interval_match_a_hand_computed_case() -> None:
    from service.campaigns.stats import compare, lift

    # treated 60 of 1000 (6%), holdout 40 of 1000 (4%)
    found = lift(60, 1000, 40, 1000)
    assert found is not None
    assert found.absolute == pytest.approx(0.02)
    se = (0.06 * 0.94 / 1000 + 0.04 * 0.96 / 1000) ** 0.5  # 0.0097980
    assert found.absolute_ci95[0] == pytest.approx(0.02 - 1.959964 * se, abs=1e-6)  # 0.000796
    assert found.absolute_ci95[1] == pytest.approx(0.02 + 1.959964 * se, abs=1e-6)  # 0.039204
    assert found.relative == pytest.approx(0.5)
    se_log = (1 / 60 - 1 / 1000 + 1 / 40 - 1 / 1000) ** 0.5
    assert found.relative_ci95 is not None
    assert found.relative_ci95[0] == pytest.approx(1.5 * 2.718281828 ** (-1.959964 * se_log) - 1, abs=1e-4)
    # pooled z = 0.02 / sqrt(0.05 * 0.95 * 2 / 1000) = 2.0520: two-sided p = 0.04016
    assert found.p_value == pytest.approx(0.04016, abs=1e-4)
    assert lift(5, 100, 0, 0) is None
    nothing_in_holdout = lift(5, 100, 0, 50)
    assert nothing_in_holdout is not None
    assert nothing_in_holdout.relative is None
    # variants 30/500 against 50/500: expected 40 and 460 per row, |O - E| = 10, with Yates'
    # correction 9.5^2 * (2/40 + 2/460) = 4.9049, p = P(|Z| > 2.2147) = 0.0268
    test = compare("conversion", [30, 50], [500, 500])
    assert test is not None
    assert test.significant
    assert test.chi2 == pytest.approx(4.9049, abs=1e-3)
    assert test.p_value == pytest.approx(0.0268, abs=1e-3)


# -- a worker killed mid-campaign -------------------------------------------------------------


async def test_a_worker_killed_mid_campaign_sends_nobody_twice_and_loses_nobody(
    tmp_path: Path, database_url: str, smtp: FakeSmtp, providers: FakeProviders
) -> None:
    import os
    import signal
    import sys

    shop = await campaign_shop(tmp_path, database_url, smtp, providers)
    concurrency = 4
    try:
        await add_people(shop, [person(n) for n in range(1, 121)])
        campaign = await create(shop, audience={"consent": "email"})
        await launch(shop, campaign["id"])
        smtp.handler.delay = 0.03  # each DATA takes a while: the kill lands with messages in flight
        env = {
            **os.environ,
            "SHOPCAST_DATABASE_URL": database_url,
            "SHOPCAST_DATA_DIR": str(tmp_path / "var"),
            "SHOPCAST_SECRET_KEY": "test-secret-key-not-for-production",
            "SHOPCAST_RETRAIN_CRON": "",
            "SHOPCAST_SMTP_URL": smtp.url,
            "SHOPCAST_PUBLIC_URL": "https://shop.test",
            "SHOPCAST_SEND_CONCURRENCY": str(concurrency),
            "SHOPCAST_SEND_CLAIM_SECONDS": "2",
            "SHOPCAST_CAMPAIGN_TICK_SECONDS": "0.2",
        }
        shopcast = str(Path(sys.executable).with_name("shopcast"))

        logs = [tmp_path / "first.log", tmp_path / "second.log"]

        async def start() -> asyncio.subprocess.Process:
            with logs[0 if not logs[0].exists() else 1].open("wb") as log:
                return await asyncio.create_subprocess_exec(
                    shopcast, "worker", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log
                )

        async def sent_some() -> bool:
            return len(smtp.messages) >= 30

        first = await start()
        try:
            await wait_for(sent_some, 60)
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        at_kill = len(smtp.messages)
        assert at_kill < 120, "the first worker finished before it was killed"

        async def completed() -> bool:
            return (await shop.ctx.campaigns.store.get(campaign["id"])).status == "completed"

        second = await start()
        try:
            await wait_for(completed, 60)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 20)
        await asyncio.sleep(0.2)  # the last DATA answers reach the fake server's log

        at_server = recipients_at(smtp)
        assert max(at_server.values()) == 1, "somebody got the message twice"
        async with shop.ctx.engine.connect() as conn:
            rows = await conn.execute(select(deliveries.c.status, deliveries.c.key))
            statuses = Counter(status for status, _ in rows)
        assert statuses["sent"] + statuses["unknown"] == 120, statuses
        assert statuses["unknown"] <= concurrency, [log.read_text()[-3000:] for log in logs]
        assert statuses["sent"] <= len(at_server) <= statuses["sent"] + statuses["unknown"]
        assert len(at_server) > at_kill
    finally:
        await shop.client.aclose()
        await shop.ctx.close()


# -- triggered flows --------------------------------------------------------------------------


async def flow(shop: Shop, kind: str, **trigger: Any) -> int:
    campaign = await create(
        shop, name=kind, trigger={"type": kind, "after_hours": 0, **trigger}, recommendations=0
    )
    await launch(shop, campaign["id"])
    await shop.ctx.campaigns.runner.tick()  # starts it
    return int(campaign["id"])


async def featured_in(shop: Shop, user_id: str) -> list[str]:
    """The items featured in the flow messages `user_id` got (from the first message's links)."""
    for _, tos, raw in shop.smtp.messages:
        if tos == [f"{user_id}@example.test"]:
            html = email.message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()  # type: ignore[union-attr]
            return [name for name in ("Tea", "Mug", "Honey") if name in html]
    return []


async def test_an_abandoned_cart_is_mailed_once_and_a_bought_one_is_not(shop: Shop) -> None:
    await add_people(shop, [person(1), person(2), person(3)])
    cid = await flow(shop, "abandoned_cart")
    await asyncio.sleep(0.01)
    answer = await shop.client.post(
        "/v1/events",
        json=[
            event("p001", "mug", "add_to_cart", 0),
            event("p002", "tea", "add_to_cart", 0),
            event("p002", "tea", "purchase", 0, price=4.5),
        ],
        headers=shop.headers,
    )
    assert answer.status_code == 200, answer.text
    await asyncio.sleep(0.01)
    for _ in range(3):
        await shop.ctx.campaigns.runner.tick()
        await shop.ctx.messaging.sender.run_once("w")
    assert recipients_at(shop.smtp) == Counter({"p001@example.test": 1})
    assert await featured_in(shop, "p001") == ["Mug"]
    # another cart within the dedupe window: no second message
    await shop.client.post(
        "/v1/events", json=[event("p001", "honey", "add_to_cart", 0)], headers=shop.headers
    )
    await asyncio.sleep(0.01)
    await shop.ctx.campaigns.runner.tick()
    await shop.ctx.messaging.sender.run_once("w")
    assert recipients_at(shop.smtp) == Counter({"p001@example.test": 1})
    assert (await shop.ctx.campaigns.store.get(cid)).status == "running"


async def test_browse_abandonment_needs_repeated_views(shop: Shop) -> None:
    await add_people(shop, [person(1), person(2)])
    await flow(shop, "browse_abandonment", min_views=3)
    await asyncio.sleep(0.01)
    views = [event("p001", "honey", "view", 0) for _ in range(3)] + [event("p002", "honey", "view", 0)]
    assert (await shop.client.post("/v1/events", json=views, headers=shop.headers)).status_code == 200
    await asyncio.sleep(0.01)
    await shop.ctx.campaigns.runner.tick()
    await shop.ctx.messaging.sender.run_once("w")
    assert set(recipients_at(shop.smtp)) == {"p001@example.test"}
    assert "Honey" in await featured_in(shop, "p001")


async def test_back_in_stock_tells_those_who_wanted_the_item(shop: Shop) -> None:
    await add_people(shop, [person(1), person(2)], [event("p001", "mug", "wishlist", 2)])
    c, h = shop.client, shop.headers
    gone = await c.put(
        "/v1/items",
        json=[{"item_id": "mug", "title": "Mug", "category": "kitchen", "available": False}],
        headers=h,
    )
    assert gone.status_code == 200
    await flow(shop, "back_in_stock")
    await shop.ctx.campaigns.runner.tick()  # sees the mug unavailable
    await shop.ctx.messaging.sender.run_once("w")
    assert shop.smtp.messages == []
    back = await c.put(
        "/v1/items",
        json=[{"item_id": "mug", "title": "Mug", "category": "kitchen", "available": True}],
        headers=h,
    )
    assert back.status_code == 200
    await shop.ctx.campaigns.runner.tick()
    await shop.ctx.messaging.sender.run_once("w")
    assert set(recipients_at(shop.smtp)) == {"p001@example.test"}
    assert await featured_in(shop, "p001") == ["Mug"]


async def test_suppressed_and_hard_bounced_addresses_are_not_mailed_again(shop: Shop) -> None:
    await add_people(shop, [person(n) for n in range(1, 5)])
    c, h = shop.client, shop.headers
    added = await c.post("/v1/suppressions", json={"emails": ["P001@example.test"]}, headers=h)
    assert added.json() == {"changed": 1}
    shop.smtp.handler.unknown_mailboxes.add("p002@example.test")
    first = await create(shop, audience={"consent": "email"})
    await launch(shop, first["id"])
    assert await drive(shop.ctx, first["id"]) == "completed"
    assert (await report(shop, first["id"]))["funnel"]["skipped"] == {"suppressed": 1}
    checked = await c.post(
        "/v1/suppressions/check", json={"emails": ["p002@example.test", "p003@example.test"]}, headers=h
    )
    assert checked.json()["suppressed"] == {"p002@example.test": "hard_bounce", "p003@example.test": None}
    second = await create(shop, audience={"consent": "email"}, name="again")
    dry = (await c.post(f"/v1/campaigns/{second['id']}/dry-run", headers=h)).json()
    assert dry["skipped"] == {"suppressed": 2}
    removed = await c.post("/v1/suppressions/remove", json={"emails": ["p001@example.test"]}, headers=h)
    assert removed.json() == {"changed": 1}
    assert (await c.get("/v1/suppressions", headers=h)).json() == {"by_reason": {"hard_bounce": 1}}


async def test_ab_variants_split_the_treated_and_each_gets_its_own_template(shop: Shop) -> None:
    await add_people(shop, [person(n) for n in range(1, 41)])
    campaign = await create(
        shop,
        audience={"consent": "email"},
        items=["honey"],
        holdout=0.2,
        variants=[
            {"name": "A", "share": 0.5},
            {"name": "B", "share": 0.5, "templates": {"email": "price_drop"}},
        ],
    )
    await launch(shop, campaign["id"])
    assert await drive(shop.ctx, campaign["id"]) == "completed"
    subjects = Counter(
        "price drop"
        if "Price drop" in str(email.message_from_bytes(raw, policy=policy.default)["Subject"])
        else "picked"
        for _, _, raw in shop.smtp.messages
    )
    r = await report(shop, campaign["id"])
    by_name = {v["name"]: v for v in r["variants"]}
    assert set(by_name) == {"A", "B"}
    assert by_name["A"]["recipients"] + by_name["B"]["recipients"] == r["lift"]["treated"]["users"]
    assert subjects == Counter({"picked": by_name["A"]["sent"], "price drop": by_name["B"]["sent"]})
    assert min(by_name["A"]["recipients"], by_name["B"]["recipients"]) >= 5
    assert r["variant_test"] is not None
    bad = await shop.client.post(
        "/v1/campaigns",
        json={
            "name": "x",
            "channels": ["email"],
            "audience": {"consent": "email"},
            "variants": [{"name": "A", "share": 0.5}, {"name": "B", "share": 0.4}],
        },
        headers=shop.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["extra"][0]["key"] == "variants"


async def test_post_purchase_cross_sells_what_is_bought_together(shop: Shop) -> None:
    from service.retraining import train_and_publish
    from tests.test_serving import CONFIG, load_shop

    await load_shop(shop.client, shop.headers)  # four taste groups; i4 belongs to group 0
    _, version, _ = await train_and_publish(shop.ctx, None, CONFIG)
    assert version is not None
    await add_people(shop, [person(1)])
    await flow(shop, "post_purchase")
    await asyncio.sleep(0.01)
    bought = await shop.client.post(
        "/v1/events", json=[event("p001", "i4", "purchase", 0)], headers=shop.headers
    )
    assert bought.status_code == 200
    await asyncio.sleep(0.01)
    await shop.ctx.campaigns.runner.tick()
    await shop.ctx.messaging.sender.run_once("w")
    assert set(recipients_at(shop.smtp)) == {"p001@example.test"}
    raw = shop.smtp.messages[0][2]
    html = email.message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()  # type: ignore[union-attr]
    featured = {int(n) for n in re.findall(r"Item (\d+)", html)}
    assert featured, "the cross-sell features items"
    assert 4 not in featured, "not the item just bought"
    assert sum(n % 4 == 0 for n in featured) >= len(featured) / 2, (
        f"mostly bought together with i4: {featured}"
    )


async def test_a_batch_that_cannot_be_prepared_goes_back_to_pending_not_lost(shop: Shop) -> None:
    await add_people(shop, [person(n) for n in range(1, 4)])
    campaign = await create(shop, audience={"consent": "email"})
    await launch(shop, campaign["id"])
    await shop.ctx.campaigns.runner.tick()
    sender = shop.ctx.messaging.sender
    working = sender.prepare

    async def database_away(batch: Any) -> Any:
        raise ConnectionError("the database went away")

    sender.prepare = database_away
    assert await sender.run_once("w") == {"pending": 3}
    async with shop.ctx.engine.connect() as conn:
        rows = (await conn.execute(select(deliveries.c.status, deliveries.c.error))).all()
    assert [status for status, _ in rows] == ["pending"] * 3
    assert all("not prepared" in (error or "") for _, error in rows)
    sender.prepare = working
    async with shop.ctx.engine.begin() as conn:
        await conn.execute(update(deliveries).values(next_attempt_at=datetime.now(UTC)))
    assert await drive(shop.ctx, campaign["id"]) == "completed"
    assert len(recipients_at(shop.smtp)) == 3
