"""The serving fast path answers as the Litestar route does, and hands everything else to it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.context import Context
from service.serving import controllers
from service.serving.fast_path import UserQuery, parse_query, user_id_of
from tests.test_serving import served  # noqa: F401  (fixture)

CHANNELS = ("web", "app", "store")


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Users answered by the Litestar route (the fast path calls its own reference)."""
    calls: list[str] = []
    original = controllers.user_answer

    def counted(ctx: Context, user_id: str, *args: Any) -> controllers.UserRecommendations:
        calls.append(user_id)
        return original(ctx, user_id, *args)

    monkeypatch.setattr(controllers, "user_answer", counted)
    return calls


def without_id(body: dict[str, Any]) -> dict[str, Any]:
    body.pop("recommendation_id")
    return body


@pytest.mark.parametrize(
    "params",
    [
        {"n": "7"},
        {"n": "12", "channel": "web", "exclude": "interacted"},
        {"n": "5", "category": "group2", "exclude": "none"},
    ],
)
async def test_the_fast_path_answers_exactly_as_the_route_does(
    client: httpx.AsyncClient,
    served: Context,  # noqa: F811  (the fixture)
    auth,
    route_calls: list[str],
    params: dict[str, str],
) -> None:
    headers = await auth("recs:read")
    fast = await client.get("/v1/users/u5/recommendations", params=params, headers=headers)
    assert route_calls == [], "plain parameters are answered in front of Litestar"
    # min_price=0 changes no answer (every price is positive) but the fast path leaves it to the route
    routed_params = {**params, "min_price": "0"}
    routed = await client.get("/v1/users/u5/recommendations", params=routed_params, headers=headers)
    assert route_calls == ["u5"]
    assert fast.status_code == routed.status_code == 200
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    assert without_id(fast.json()) == without_id(routed.json())
    assert fast.json()["recommendation_id"] != routed.json()["recommendation_id"]


async def test_a_key_is_checked_and_counted_once_whichever_path_answers(
    client: httpx.AsyncClient, ctx: Context, route_calls: list[str]
) -> None:
    new = await ctx.keys.create("limited", "recs:read", rate_limit_per_minute=4)
    headers = {"Authorization": f"Bearer {new.secret}"}
    statuses = [
        (await client.get("/v1/users/u1/recommendations", params=params, headers=headers)).status_code
        for params in ({"n": "3"}, {"n": "3", "min_price": "1"}, {"n": "3"}, {"n": "3", "max_price": "9"})
    ]
    assert statuses == [200, 200, 200, 200], "the four requests of the minute are counted once each"
    assert route_calls == ["u1", "u1"]
    refused = await client.get("/v1/users/u1/recommendations", params={"n": "3"}, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["detail"] == "rate limit of 4 requests a minute reached"
    assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer sck_unknown"}, 401), ("events:write", 403)],
)
async def test_refused_keys_get_the_routes_own_errors(
    client: httpx.AsyncClient, auth, headers: dict[str, str] | str, status: int
) -> None:
    if isinstance(headers, str):
        headers = await auth(headers)
    response = await client.get("/v1/users/u1/recommendations", headers=headers)
    assert response.status_code == status
    assert set(response.json()) >= {"status_code", "detail"}


@pytest.mark.parametrize(
    ("query", "name"),
    [("n=0", "n"), ("n=1001", "n"), ("n=ten", "n"), ("channel=moon", "channel"), ("exclude=all", "exclude")],
)
async def test_bad_parameters_reach_the_route_and_get_its_400(
    client: httpx.AsyncClient, auth, route_calls: list[str], query: str, name: str
) -> None:
    response = await client.get(f"/v1/users/u1/recommendations?{query}", headers=await auth("recs:read"))
    assert response.status_code == 400, response.text
    assert name in response.text
    assert route_calls == []


async def test_a_database_away_gets_the_routes_503(client_without_database: httpx.AsyncClient) -> None:
    response = await client_without_database.get(
        "/v1/users/u1/recommendations", headers={"Authorization": "Bearer sck_anything"}
    )
    assert response.status_code == 503
    assert "database unavailable" in response.json()["detail"]


def test_only_plainly_valid_parameters_are_taken() -> None:
    assert parse_query(b"", CHANNELS) == UserQuery()
    assert parse_query(b"n=1000&channel=app&category=Tea+%26+honey&exclude=none", CHANNELS) == UserQuery(
        1000, "app", "Tea & honey", "none"
    )
    for declined in (
        b"n=01",
        b"n=+5",
        b"n=5&n=6",
        b"n=",
        b"channel=",
        b"channel=moon",
        b"category=",
        b"category=a%00b",
        b"category=" + b"x" * 257,
        b"exclude=everything",
        b"min_price=1",
        b"unknown=1",
    ):
        assert parse_query(declined, CHANNELS) is None, declined


def test_only_recommendation_paths_with_valid_ids_are_taken() -> None:
    assert user_id_of("/v1/users/u-1.a_b@c/recommendations") == "u-1.a_b@c"
    for path in (
        "/v1/users//recommendations",
        "/v1/users/a/b/recommendations",
        "/v1/users/u1/recommendations/",
        "/v1/users/u1/buy-again",
        "/v1/users/" + "x" * 129 + "/recommendations",
        "/v1/users/u\x00/recommendations",
    ):
        assert user_id_of(path) is None, path
