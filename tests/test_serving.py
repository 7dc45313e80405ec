"""Serving from the public API: every endpoint with a trained model, filters, fold-in, cold start, rules."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.context import Context
from service.retraining import train_and_publish
from tests.conftest import make_settings
from tests.test_training import synthetic_shop
from training.pipeline import TrainConfig

DAY = 86_400.0
N_ITEMS = 120
CONFIG = TrainConfig(seed=3, threads=1, max_eval_users=300, max_blend_users=300)


def catalog() -> list[dict[str, Any]]:
    """Item i belongs to taste group i % 4; every tenth item is sold only on the web."""
    return [
        {
            "item_id": f"i{i}",
            "title": f"Item {i}",
            "category": f"group{i % 4}",
            "description": ["tea", "coffee", "mugs", "honey"][i % 4] + f" number {i}",
            "price": float(1 + i),
            "currency": "EUR",
            "url": f"https://shop.example.test/i{i}",
            "available": {"web": True, "store": False} if i % 10 == 0 else True,
            "stock": 5,
        }
        for i in range(N_ITEMS)
    ]


async def load_shop(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """The synthetic shop's catalog and events, ending an hour ago."""
    put = await client.put("/v1/items", json=catalog(), headers=admin)
    assert put.status_code == 200, put.text
    table = synthetic_shop(start=time.time() - 61 * DAY).to_pylist()
    events = [{**row, "timestamp": row["timestamp"]} for row in table]
    for start in range(0, len(events), 5_000):
        posted = await client.post("/v1/events", json=events[start : start + 5_000], headers=admin)
        assert posted.status_code == 200, posted.text


@pytest.fixture
async def served(client: httpx.AsyncClient, ctx: Context, admin: dict[str, str]) -> Context:
    await load_shop(client, admin)
    _, version, _ = await train_and_publish(ctx, None, CONFIG)
    assert version is not None
    await ctx.serving.refresh()
    assert ctx.serving.version == version
    assert not ctx.serving.fresh.by_user, "events the model was trained on are not fresh"
    return ctx


@pytest.fixture
async def recs(auth) -> dict[str, str]:
    return await auth("recs:read")


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


async def bought(ctx: Context, user_id: str) -> set[str]:
    model = ctx.serving.model
    assert model is not None
    row = model.user_row[user_id]
    return {model.item_ids[i] for i in model.purchased[row].indices}


async def test_user_recommendations_have_the_documented_shape_and_skip_purchases(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str]
) -> None:
    response = await client.get("/v1/users/u5/recommendations", params={"n": 8}, headers=recs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == "u5"
    assert body["model_version"] == served.serving.version
    assert body["strategy"] == "model"
    version, _, unique = body["recommendation_id"].partition(".")
    assert version == served.serving.version
    assert len(unique) == 32
    assert len(body["items"]) == 8
    first = body["items"][0]
    assert set(first) == {"item_id", "title", "price", "currency", "url", "image_url", "score", "source"}
    assert first["title"].startswith("Item ")
    assert first["currency"] == "EUR"
    assert {item["source"] for item in body["items"]} <= {
        "als",
        "similar",
        "trending",
        "content",
        "bought_together",
        "buy_again",
        "pinned",
    }
    assert not set(ids(body)) & await bought(served, "u5"), "bought items are excluded by default"
    # the model learned taste groups: most recommendations are from the user's group (5 % 4 = 1)
    assert sum(int(i[1:]) % 4 == 1 for i in ids(body)) >= 6


async def test_exclude_modes_and_filters(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str]
) -> None:
    model = served.serving.model
    assert model is not None
    seen = {model.item_ids[i] for i in model.history[model.user_row["u6"]].indices}
    interacted = await client.get(
        "/v1/users/u6/recommendations", params={"n": 20, "exclude": "interacted"}, headers=recs
    )
    assert not set(ids(interacted.json())) & seen
    everything = await client.get(
        "/v1/users/u6/recommendations", params={"n": 20, "exclude": "none"}, headers=recs
    )
    assert set(ids(everything.json())) & seen, "with exclude=none the user's own items may come back"
    store = await client.get(
        "/v1/users/u6/recommendations", params={"n": 30, "channel": "store"}, headers=recs
    )
    assert all(int(i[1:]) % 10 for i in ids(store.json())), "web-only items never shown for the store"
    cheap = await client.get(
        "/v1/users/u6/recommendations",
        params={"n": 10, "category": "group1", "max_price": 50},
        headers=recs,
    )
    assert cheap.json()["items"], "the filters leave something"
    assert all(item["price"] <= 50 and int(item["item_id"][1:]) % 4 == 1 for item in cheap.json()["items"])


async def test_out_of_stock_items_never_appear_and_come_back_when_restocked(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str], admin: dict[str, str]
) -> None:
    before = await client.get("/v1/users/u7/recommendations", params={"n": 10}, headers=recs)
    top = ids(before.json())[:3]
    for item in top:
        patched = await client.patch(f"/v1/items/{item}", json={"stock": 0}, headers=admin)
        assert patched.status_code == 200
    for user in range(0, 40):
        response = await client.get(f"/v1/users/u{user}/recommendations", params={"n": 20}, headers=recs)
        assert not set(ids(response.json())) & set(top)
    trending = await client.get("/v1/items/trending", params={"n": 50, "window": "30d"}, headers=recs)
    assert not set(ids(trending.json())) & set(top)
    await client.patch(f"/v1/items/{top[0]}", json={"stock": 3}, headers=admin)
    after = await client.get("/v1/users/u7/recommendations", params={"n": 10}, headers=recs)
    assert top[0] in ids(after.json())


async def test_fresh_events_move_recommendations_and_a_purchase_disappears_at_once(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str], admin: dict[str, str]
) -> None:
    first = (await client.get("/v1/users/u8/recommendations", params={"n": 10}, headers=recs)).json()
    target = ids(first)[0]
    now = time.time()
    event = {"user_id": "u8", "item_id": target, "event": "purchase", "timestamp": now}
    assert (await client.post("/v1/events", json=event, headers=admin)).status_code == 200
    second = (await client.get("/v1/users/u8/recommendations", params={"n": 10}, headers=recs)).json()
    assert second["strategy"] == "fresh"
    assert target not in ids(second)
    # u8 is in group 0; a burst of views of group-3 items pulls group 3 up
    burst = [
        {"user_id": "u8", "item_id": f"i{i}", "event": "add_to_cart", "timestamp": now + k}
        for k, i in enumerate(range(3, 60, 4))
    ]
    assert (await client.post("/v1/events", json=burst, headers=admin)).status_code == 200
    third = (
        await client.get("/v1/users/u8/recommendations", params={"n": 10, "exclude": "none"}, headers=recs)
    ).json()
    group3 = sum(int(i[1:]) % 4 == 3 for i in ids(third))
    assert group3 > sum(int(i[1:]) % 4 == 3 for i in ids(first))


async def test_unknown_users_get_trending_and_sessions_shape_them(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str]
) -> None:
    cold = (await client.get("/v1/users/nobody/recommendations", params={"n": 5}, headers=recs)).json()
    assert cold["strategy"] == "cold_start"
    assert len(cold["items"]) == 5
    assert {item["source"] for item in cold["items"]} == {"trending"}
    session = await client.post(
        "/v1/sessions/recommendations",
        json={"items": [{"item_id": f"i{i}"} for i in (2, 6, 10, 14)], "n": 10},
        headers=recs,
    )
    assert session.status_code == 200, session.text
    body = session.json()
    assert body["strategy"] == "session"
    assert not set(ids(body)) & {"i2", "i6", "i10", "i14"}, "session items are not offered again"
    assert sum(int(i[1:]) % 4 == 2 for i in ids(body)) >= 6


async def test_similar_bought_together_trending_and_buy_again(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str]
) -> None:
    similar = (await client.get("/v1/items/i9/similar", params={"n": 6}, headers=recs)).json()
    assert len(similar["items"]) == 6
    assert "i9" not in ids(similar)
    assert sum(int(i[1:]) % 4 == 1 for i in ids(similar)) >= 4
    together = await client.get("/v1/items/i9/bought-together", params={"n": 5}, headers=recs)
    assert together.status_code == 200
    assert "i9" not in ids(together.json())
    for window in ("1h", "24h", "7d", "30d"):
        trending = await client.get("/v1/items/trending", params={"n": 7, "window": window}, headers=recs)
        assert trending.status_code == 200
        assert len(trending.json()["items"]) == 7
    again = (await client.get("/v1/users/u5/buy-again", params={"n": 50}, headers=recs)).json()
    assert again["items"]
    assert set(ids(again)) <= await bought(served, "u5")
    nothing = (await client.get("/v1/users/nobody/buy-again", headers=recs)).json()
    assert nothing["items"] == []


async def test_batch_recommendations(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/recommendations/batch", json={"user_ids": ["u1", "u2", "stranger"], "n": 4}, headers=recs
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["user_id"] for r in results] == ["u1", "u2", "stranger"]
    assert [r["strategy"] for r in results] == ["model", "model", "cold_start"]
    assert all(len(r["items"]) == 4 for r in results)


async def test_pinned_items_come_first_and_blocked_never_appear(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str], admin: dict[str, str]
) -> None:
    before = ids((await client.get("/v1/users/u9/recommendations", params={"n": 10}, headers=recs)).json())
    blocked, pinned = before[0], "i119"
    assert (
        await client.put(f"/v1/rules/{blocked}", json={"action": "block"}, headers=admin)
    ).status_code == 200
    assert (await client.put(f"/v1/rules/{pinned}", json={"action": "pin"}, headers=admin)).status_code == 200
    after = (await client.get("/v1/users/u9/recommendations", params={"n": 10}, headers=recs)).json()
    assert ids(after)[0] == pinned
    assert after["items"][0]["source"] == "pinned"
    assert blocked not in ids(after)
    rules = (await client.get("/v1/rules", headers=admin)).json()
    assert {(r["item_id"], r["action"]) for r in rules} == {(blocked, "block"), (pinned, "pin")}
    assert (await client.delete(f"/v1/rules/{blocked}", headers=admin)).status_code == 204
    assert (await client.delete(f"/v1/rules/{blocked}", headers=admin)).status_code == 404
    restored = ids((await client.get("/v1/users/u9/recommendations", params={"n": 10}, headers=recs)).json())
    assert blocked in restored


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/v1/users/u1/recommendations", {"n": 0}, "n"),
        ("/v1/users/u1/recommendations", {"n": 1001}, "n"),
        ("/v1/users/u1/recommendations", {"channel": "moon"}, "channel"),
        ("/v1/users/u1/recommendations", {"exclude": "everything"}, "exclude"),
        ("/v1/users/u1/recommendations", {"min_price": 9, "max_price": 1}, "min_price"),
        ("/v1/items/trending", {"window": "2d"}, "window"),
        ("/v1/items/i1/similar", {"n": "many"}, "n"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client: httpx.AsyncClient, recs: dict[str, str], path: str, params: dict[str, Any], name: str
) -> None:
    response = await client.get(path, params=params, headers=recs)
    assert response.status_code == 400, response.text
    assert name in response.text


async def test_without_a_model_popularity_answers_and_unknown_items_are_404(
    client: httpx.AsyncClient, ctx: Context, admin: dict[str, str], recs: dict[str, str]
) -> None:
    await load_shop(client, admin)
    await ctx.serving.refresh()
    response = await client.get("/v1/users/u1/recommendations", params={"n": 5}, headers=recs)
    assert response.status_code == 200
    body = response.json()
    assert body["strategy"] == "no_model"
    assert body["model_version"] is None
    assert len(body["items"]) == 5
    assert {i["source"] for i in body["items"]} == {"trending"}
    ready = (await client.get("/health/ready")).json()
    assert ready["model"] == "none: popular items answer"
    missing = await client.get("/v1/items/nope/similar", headers=recs)
    assert missing.status_code == 404
    assert "nope" in missing.text


async def test_recommendations_need_the_recs_scope(client: httpx.AsyncClient, auth) -> None:
    events_only = await auth("events:write")
    response = await client.get("/v1/users/u1/recommendations", headers=events_only)
    assert response.status_code == 403
    assert (await client.get("/v1/users/u1/recommendations")).status_code == 401


async def test_a_new_model_is_swapped_in_under_load_with_no_failed_request(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str]
) -> None:
    first = served.serving.version
    seen: list[tuple[int, str]] = []
    statuses: list[int] = []
    stop = asyncio.Event()

    async def storefront(worker: int) -> None:
        n = 0
        while not stop.is_set():
            user = f"u{(worker * 37 + n) % 300}"
            response = await client.get(f"/v1/users/{user}/recommendations", params={"n": 5}, headers=recs)
            statuses.append(response.status_code)
            if response.status_code == 200:
                seen.append((worker, response.json()["model_version"]))
            n += 1
            await asyncio.sleep(0.05)  # a storefront's pace: the training task runs, no rate limit is hit

    workers = [asyncio.create_task(storefront(w)) for w in range(8)]
    _, second, _ = await train_and_publish(served, None, CONFIG, force=True)
    assert second is not None
    assert await served.serving.check_model()
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*workers)
    assert set(statuses) == {200}, "no request failed during the swap"
    assert {version for _, version in seen} == {first, second}
    for worker in range(8):  # each storefront saw the old version, then only the new one
        versions = [version for w, version in seen if w == worker]
        assert versions == sorted(versions, key=lambda v: v == second)


async def test_a_redis_notice_swaps_the_model_at_once_and_serving_survives_redis_stopping(
    tmp_path: Path,
    database_url: str,
    served: Context,
    recs: dict[str, str],
    private_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = private_redis
    configured = make_settings(tmp_path, database_url, redis_url=url, model_poll_seconds="600")
    app = create_app(configured)
    app.state.ctx = listener = Context.create(configured)
    await listener.serving.ensure_ready()
    listener.serving.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as other:
            first = listener.serving.version
            publisher = Context.create(configured)  # as `shopcast train` would, in its own process
            try:
                _, second, _ = await train_and_publish(publisher, None, CONFIG, force=True)
            finally:
                await publisher.close()
            for _ in range(100):  # polling is 10 minutes away: only the notice can do it
                if listener.serving.version == second:
                    break
                await asyncio.sleep(0.05)
            assert first != second
            assert listener.serving.version == second

            server.kill()
            server.wait()
            for user in ("u1", "u2", "nobody"):
                response = await other.get(f"/v1/users/{user}/recommendations", headers=recs)
                assert response.status_code == 200, response.text
                assert response.json()["model_version"] == second
            ready = (await other.get("/health/ready")).json()
            assert ready["redis"] == "unavailable"
            assert ready["model"] == second
    finally:
        await listener.close()


async def test_answers_served_and_clicks_reported_give_each_model_its_click_through(
    client: httpx.AsyncClient, served: Context, recs: dict[str, str], admin: dict[str, str]
) -> None:
    answers = [
        (await client.get(f"/v1/users/u{n}/recommendations", headers=recs)).json() for n in (1, 2, 3, 4)
    ]
    await served.serving.served.flush(served.engine)  # what each process does every few seconds
    first = answers[0]
    click = {
        "user_id": "u1",
        "item_id": first["items"][0]["item_id"],
        "event": "click",
        "timestamp": datetime.now(UTC).isoformat(),
        "recommendation_id": first["recommendation_id"],
    }
    assert (await client.post("/v1/events", json=click, headers=admin)).status_code == 200
    report = (await client.get("/v1/analytics/models", headers=admin)).json()
    version = next(v for v in report["versions"] if v["version"] == served.serving.version)
    assert version["serving"] is True
    assert version["online"] == {"served": 4, "clicked": 1, "click_through": 0.25}
    assert "ndcg@10" in version["offline"]["novel"]
