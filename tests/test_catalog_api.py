"""PUT /v1/items, GET and PATCH /v1/items/{id}."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
async def headers(auth) -> dict[str, str]:
    return await auth("catalog:write")


ITEM = {
    "item_id": "sku-1",
    "title": "Green tea",
    "description": "Loose leaf",
    "category": "Drinks > Tea",
    "tags": ["tea", "green", "tea"],
    "price": 4.5,
    "currency": "EUR",
    "url": "https://shop.example.test/sku-1",
    "image_url": "https://shop.example.test/sku-1.jpg",
    "available": {"web": True, "store": False},
    "stock": 12,
}


async def test_upsert_then_read_back(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.put(
        "/v1/items", json=[ITEM, {"item_id": "sku-2", "title": "Mug"}], headers=headers
    )
    assert response.json() == {"upserted": 2}
    item = (await client.get("/v1/items/sku-1", headers=headers)).json()
    assert item["tags"] == ["tea", "green"]
    assert item["channel_availability"] == {"web": True, "store": False}
    assert item["available"] is True
    assert item["price"] == 4.5
    bare = (await client.get("/v1/items/sku-2", headers=headers)).json()
    assert bare["tags"] == []
    assert bare["available"] is True
    assert bare["price"] is None


async def test_fields_left_out_keep_their_values_and_null_clears(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.put("/v1/items", json=[ITEM], headers=headers)
    await client.put(
        "/v1/items", json=[{"item_id": "sku-1", "title": "Green tea 2", "description": None}], headers=headers
    )
    item = (await client.get("/v1/items/sku-1", headers=headers)).json()
    assert item["title"] == "Green tea 2"
    assert item["description"] is None
    assert item["price"] == 4.5
    assert item["stock"] == 12


async def test_same_item_twice_in_a_batch_merges_later_wins(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = [ITEM, {"item_id": "sku-1", "title": "Renamed", "price": 5.0}]
    assert (await client.put("/v1/items", json=body, headers=headers)).status_code == 200
    item = (await client.get("/v1/items/sku-1", headers=headers)).json()
    assert (item["title"], item["price"], item["stock"]) == ("Renamed", 5.0, 12)


async def test_patch_changes_availability_stock_and_price(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.put("/v1/items", json=[ITEM], headers=headers)
    patched = await client.patch(
        "/v1/items/sku-1", json={"available": False, "stock": 0, "price": 3.99}, headers=headers
    )
    assert patched.status_code == 200
    body = patched.json()
    assert (body["available"], body["stock"], body["price"], body["title"]) == (False, 0, 3.99, "Green tea")
    per_channel = await client.patch("/v1/items/sku-1", json={"available": {"app": True}}, headers=headers)
    assert per_channel.json()["channel_availability"] == {"app": True}


async def test_unknown_item_is_404(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await client.get("/v1/items/nope", headers=headers)).status_code == 404
    assert (await client.patch("/v1/items/nope", json={"stock": 1}, headers=headers)).status_code == 404
    assert (await client.patch("/v1/items/nope", json={}, headers=headers)).status_code == 404


@pytest.mark.parametrize(
    ("record", "field", "status"),
    [
        ({"item_id": "a"}, "title", 400),
        ({"item_id": "a", "title": "t", "price": -1}, "price", 400),
        ({"item_id": "a", "title": "t", "currency": "euro"}, "currency", 400),
        ({"item_id": "a", "title": "t", "stock": 1.5}, "stock", 400),
        ({"item_id": "a", "title": "t", "url": "javascript:alert(1)"}, "url", 400),
        ({"item_id": "a", "title": "t", "colour": "red"}, "colour", 400),
        ({"item_id": "", "title": "t"}, "item_id", 400),
        ({"item_id": "a", "title": "t", "available": {"fax": True}}, "available.fax", 422),
    ],
)
async def test_bad_items_are_refused_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], record: dict[str, object], field: str, status: int
) -> None:
    body = [{"item_id": "fine", "title": "ok"}, record]
    response = await client.put("/v1/items", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert field in response.text
    assert (await client.get("/v1/items/fine", headers=headers)).status_code == 404, "nothing half-applied"


async def test_bad_patch_is_refused(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    await client.put("/v1/items", json=[ITEM], headers=headers)
    response = await client.patch("/v1/items/sku-1", json={"available": {"fax": True}}, headers=headers)
    assert response.status_code == 422
    assert response.json()["extra"][0]["key"] == "available.fax"
