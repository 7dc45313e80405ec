"""Users: upsert, read, find by email, consents, encryption at rest, export and erasure."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, insert, select, text

from service.context import Context
from service.messaging.deliveries import NewDelivery
from service.storage.tables import campaign_recipients, message_events, metadata
from service.users.service import tables_with_user_id

USER = {
    "user_id": "u-42",
    "email": "Ada.Lovelace@Example.test",
    "phone": "+44 20 7946 0958",
    "push_tokens": ["fcm-token-abc", "fcm-token-def"],
    "locale": "en_GB",
    "timezone": "Europe/London",
    "consents": {"email": True, "push": {"granted": False, "source": "app-settings", "at": 1_700_000_000}},
    "attributes": {"first_name": "Ada", "vip": True, "orders": 3},
}


@pytest.fixture
async def headers(auth) -> dict[str, str]:
    return await auth("users:write,events:write")


async def test_upsert_and_read_back_decrypted(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await client.put("/v1/users", json=[USER], headers=headers)).json() == {"upserted": 1}
    user = (await client.get("/v1/users/u-42", headers=headers)).json()
    assert user["email"] == USER["email"]
    assert user["phone"] == USER["phone"]
    assert user["push_tokens"] == USER["push_tokens"]
    assert user["locale"] == "en-GB"
    assert user["consents"]["email"]["granted"] is True
    assert user["consents"]["push"] == {
        "granted": False,
        "source": "app-settings",
        "updated_at": user["consents"]["push"]["updated_at"],
    }
    assert user["consents"]["push"]["updated_at"].startswith("2023-11-14T22:13:20")
    assert user["attributes"] == USER["attributes"]


async def test_contact_points_are_never_stored_in_plain_text(
    client: httpx.AsyncClient, ctx: Context, headers: dict[str, str]
) -> None:
    await client.put("/v1/users", json=[USER], headers=headers)
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM users"))).one()
    raw = repr(tuple(row)).lower()
    for secret in ("ada.lovelace", "example.test", "7946", "fcm-token"):
        assert secret not in raw, secret


async def test_ciphertext_moved_to_another_user_does_not_decrypt(
    client: httpx.AsyncClient, ctx: Context, headers: dict[str, str]
) -> None:
    await client.put("/v1/users", json=[USER, {"user_id": "u-7"}], headers=headers)
    copy = "UPDATE users SET email_ct = (SELECT email_ct FROM users WHERE user_id = 'u-42')"
    async with ctx.engine.begin() as conn:
        await conn.execute(text(f"{copy} WHERE user_id = 'u-7'"))
    response = await client.get("/v1/users/u-7", headers=headers)
    assert response.status_code == 500
    assert "did not authenticate" in response.json()["detail"]
    assert "SHOPCAST_SECRET_KEY" in response.json()["detail"]


async def test_find_by_email_through_the_blind_index(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.put(
        "/v1/users", json=[USER, {"user_id": "other", "email": "x@example.test"}], headers=headers
    )
    found = await client.get("/v1/users", params={"email": " ada.lovelace@example.TEST"}, headers=headers)
    assert [u["user_id"] for u in found.json()] == ["u-42"]
    none = await client.get("/v1/users", params={"email": "nobody@example.test"}, headers=headers)
    assert none.json() == []


async def test_partial_update_keeps_other_fields_and_null_clears(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.put("/v1/users", json=[USER], headers=headers)
    await client.put(
        "/v1/users", json=[{"user_id": "u-42", "phone": None, "consents": {"push": True}}], headers=headers
    )
    user = (await client.get("/v1/users/u-42", headers=headers)).json()
    assert user["phone"] is None
    assert user["email"] == USER["email"]
    assert user["consents"]["push"]["granted"] is True
    assert user["consents"]["email"]["granted"] is True


@pytest.mark.parametrize(
    ("record", "field", "status"),
    [
        ({"user_id": "a", "email": "not-an-email"}, "email", 400),
        ({"user_id": "a", "timezone": "Mars/Olympus"}, "timezone", 422),
        ({"user_id": "a", "consents": {"fax": True}}, "consents", 400),
        ({"user_id": "a", "consents": {"email": {"granted": True, "at": "soon"}}}, "consents.email.at", 422),
        ({"user_id": "a", "locale": "english please"}, "locale", 400),
        ({"user_id": "a", "attributes": {"nested": {"no": 1}}}, "attributes", 400),
        ({"email": "a@b.test"}, "user_id", 400),
    ],
)
async def test_bad_users_are_refused_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], record: dict[str, object], field: str, status: int
) -> None:
    response = await client.put("/v1/users", json=[{"user_id": "fine"}, record], headers=headers)
    assert response.status_code == status, response.text
    assert field in response.text
    assert (await client.get("/v1/users/fine", headers=headers)).status_code == 404


async def test_export_holds_profile_consents_and_every_event(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await client.put("/v1/users", json=[USER], headers=headers)
    events = [
        {
            "user_id": "u-42",
            "item_id": f"i{n}",
            "event": "purchase",
            "timestamp": 1_700_000_000 + n,
            "price": 2.5,
        }
        for n in range(3)
    ]
    await client.post("/v1/events", json=events, headers=headers)
    export = (await client.get("/v1/users/u-42/export", headers=headers)).json()
    assert export["user"]["email"] == USER["email"]
    assert export["user"]["consents"]["email"]["granted"] is True
    assert [e["item_id"] for e in export["events"]] == ["i0", "i1", "i2"]
    assert (await client.get("/v1/users/ghost/export", headers=headers)).status_code == 404


async def test_erasure_leaves_nothing_keyed_by_the_user(
    client: httpx.AsyncClient, ctx: Context, headers: dict[str, str]
) -> None:
    await client.put(
        "/v1/users", json=[USER, {"user_id": "keep", "consents": {"email": True}}], headers=headers
    )
    events = [
        {"user_id": uid, "item_id": "i1", "event": "view", "timestamp": 1_700_000_000}
        for uid in ("u-42", "u-42", "keep")
    ]
    await client.post("/v1/events", json=events, headers=headers)
    for uid in ("u-42", "keep"):  # a message each, rendered and stored (it holds the address)
        message = NewDelivery(f"m-{uid}", "message", "email", {"to": f"{uid}@example.test"}, user_id=uid)
        await ctx.messaging.store.add(message)
        async with ctx.engine.begin() as conn:  # a campaign considered them, and they clicked
            at = datetime.now(UTC)
            await conn.execute(
                insert(campaign_recipients).values(
                    campaign_id=1,
                    run=1,
                    user_id=uid,
                    channel="email",
                    variant="main",
                    outcome="treated",
                    planned_at=at,
                )
            )
            await conn.execute(
                insert(message_events).values(
                    delivery_key=f"m-{uid}", user_id=uid, kind="click", occurred_at=at
                )
            )
    erased = (await client.delete("/v1/users/u-42", headers=headers)).json()
    assert erased["deleted"] == {
        "events": 2,
        "user_consents": 2,
        "users": 1,
        "deliveries": 1,
        "campaign_recipients": 1,
        "message_events": 1,
        "user_channel_daily": 1,
        "user_channel_latest": 1,
    }
    async with ctx.engine.connect() as conn:
        for table in tables_with_user_id():
            left = await conn.execute(
                select(func.count()).select_from(table).where(table.c.user_id == "u-42")
            )
            assert left.scalar_one() == 0, table.name
            kept = await conn.execute(
                select(func.count()).select_from(table).where(table.c.user_id == "keep")
            )
            assert kept.scalar_one() >= 1, table.name
    assert (await client.get("/v1/users/u-42", headers=headers)).status_code == 404
    again = (await client.delete("/v1/users/u-42", headers=headers)).json()
    assert set(again["deleted"].values()) == {0}


def test_every_table_that_can_hold_personal_data_is_erased() -> None:
    """A table holding user data must carry `user_id`, or be known to hold none."""
    without_user_id = {t.name for t in metadata.sorted_tables} - {t.name for t in tables_with_user_id()}
    known = {"items", "api_keys", "model_versions", "scheduled_runs", "merch_rules"}
    staff_content = {"message_templates", "social_posts", "audiences", "campaigns"}  # no one's data
    aggregates = {"item_daily", "item_weekly", "channel_daily", "recommendation_daily"}  # counts, no one's
    staff_accounts = {"staff_users", "staff_sessions", "staff_login_failures"}  # the shop's staff, not users
    # suppressions hold only a keyed hash of an address, kept on purpose: an erased address that
    # asked never to be mailed again must not be mailed again
    assert without_user_id == known | staff_content | aggregates | staff_accounts | {"suppressions"}
