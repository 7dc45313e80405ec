"""The staff console over HTTP: sign-in, sessions, CSRF, roles, and every page answering.

The browser drives it end to end in tests/test_console_browser.py; these check the refusals
exactly (status, message) and that each page renders for the roles that may see it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from service.console.staff import IDLE
from service.context import Context
from service.storage.tables import staff_sessions

Client = httpx.AsyncClient
PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client: Client, email: str, password: str = PASSWORD) -> httpx.Response:
    form = await client.get("/console/login")
    return await client.post(
        "/console/login", data={"email": email, "password": password, "csrf_token": csrf_of(form.text)}
    )


@pytest.fixture
async def staff(ctx: Context) -> Context:
    for role in ("viewer", "marketer", "admin"):
        await ctx.staff.create(f"{role}@shop.example", PASSWORD, role)
    return ctx


async def test_sign_in_opens_a_session_and_sign_out_ends_it(client: Client, staff: Context) -> None:
    assert (await client.get("/console/")).status_code == 303  # not signed in: to the sign-in page
    signed = await sign_in(client, "Marketer@Shop.example")  # emails are not case-sensitive
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console"
    cookie = signed.cookies.get("shopcast_console")
    assert cookie
    set_cookie = signed.headers.get_list("set-cookie")
    assert any("HttpOnly" in c and "SameSite=strict" in c for c in set_cookie)
    dashboard = await client.get("/console/")
    assert dashboard.status_code == 200
    assert "Hot items" in dashboard.text
    assert "marketer@shop.example" in dashboard.text
    out = await client.post("/console/logout", data={"csrf_token": csrf_of(dashboard.text)})
    assert out.status_code == 303
    client.cookies.set("shopcast_console", cookie, path="/console")  # an old cookie is worth nothing now
    again = await client.get("/console/")
    assert again.status_code == 303
    assert "why=expired" in again.headers["location"]


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    client: Client, staff: Context
) -> None:
    wrong = await sign_in(client, "admin@shop.example", "not the password")
    unknown = await sign_in(client, "nobody@shop.example", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password." in wrong.text
    assert "Wrong email or password." in unknown.text
    assert "shopcast_console" not in wrong.cookies


async def test_repeated_failures_lock_the_email_out_for_longer_each_time(
    client: Client, staff: Context
) -> None:
    for _ in range(4):
        await sign_in(client, "admin@shop.example", "guess")
    locked = await sign_in(client, "admin@shop.example")  # even the right password, while locked
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert int(locked.headers["retry-after"]) >= 1
    for _ in range(3):
        await sign_in(client, "nobody@shop.example", "guess")  # unknown emails are throttled alike
    await sign_in(client, "nobody@shop.example", "guess")
    assert (await sign_in(client, "nobody@shop.example", "guess")).status_code == 429


async def test_an_expired_session_is_sent_to_sign_in_saying_so(client: Client, staff: Context) -> None:
    await sign_in(client, "viewer@shop.example")
    assert (await client.get("/console/campaigns")).status_code == 200
    async with staff.engine.begin() as conn:
        await conn.execute(
            update(staff_sessions).values(last_seen_at=datetime.now(UTC) - IDLE - timedelta(seconds=1))
        )
    expired = await client.get("/console/campaigns")
    assert expired.status_code == 303
    assert expired.headers["location"].startswith("/console/login?why=expired&next=/console/campaigns")
    page = await client.get(expired.headers["location"])
    assert "Your session has expired" in page.text
    htmx = await client.post("/console/audiences/estimate", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"].startswith("/console/login")


async def test_a_post_without_the_csrf_token_is_refused(client: Client, staff: Context, admin) -> None:
    await sign_in(client, "marketer@shop.example")
    created = await client.post(
        "/v1/campaigns",
        json={"name": "c", "channels": ["email"], "audience": {"consent": "email"}},
        headers=admin,
    )
    campaign_id = created.json()["id"]
    refused = await client.post(f"/console/campaigns/{campaign_id}/launch", data={})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    forged = await client.post(f"/console/campaigns/{campaign_id}/launch", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    status = await client.get(f"/v1/campaigns/{campaign_id}", headers=admin)
    assert status.json()["status"] == "draft"  # nothing happened
    no_login_token = await client.post(
        "/console/login", data={"email": "admin@shop.example", "password": PASSWORD}
    )
    assert no_login_token.status_code == 403


async def test_a_viewer_cannot_launch_a_campaign(client: Client, staff: Context, admin) -> None:
    created = await client.post(
        "/v1/campaigns",
        json={"name": "c", "channels": ["email"], "audience": {"consent": "email"}},
        headers=admin,
    )
    campaign_id = created.json()["id"]
    await sign_in(client, "viewer@shop.example")
    detail = await client.get(f"/console/campaigns/{campaign_id}")
    assert detail.status_code == 200
    assert ">Launch<" not in detail.text  # not offered
    refused = await client.post(
        f"/console/campaigns/{campaign_id}/launch", data={"csrf_token": csrf_of(detail.text)}
    )
    assert refused.status_code == 403
    assert "Your role (viewer) cannot do this: it needs marketer or above." in refused.text
    assert (await client.get(f"/v1/campaigns/{campaign_id}", headers=admin)).json()["status"] == "draft"
    assert (await client.get("/console/keys")).status_code == 403  # admins only


async def test_every_page_renders_for_an_admin(client: Client, staff: Context, admin) -> None:
    await client.put(
        "/v1/items", json=[{"item_id": "i1", "title": "Tea", "category": "tea", "price": 4}], headers=admin
    )
    user = {"user_id": "u1", "email": "u1@example.com", "consents": {"email": True}}
    await client.put("/v1/users", json=[user], headers=admin)
    created = await client.post(
        "/v1/campaigns",
        json={"name": "Spring", "channels": ["email"], "audience": {"consent": "email"}},
        headers=admin,
    )
    audience = await client.post(
        "/v1/audiences", json={"name": "tea", "rules": {"consent": "email"}}, headers=admin
    )
    await sign_in(client, "admin@shop.example")
    pages = [
        "/console/", "/console/?period=7d&channel=web", "/console/campaigns", "/console/campaigns/new",
        f"/console/campaigns/{created.json()['id']}", f"/console/campaigns/{created.json()['id']}/edit",
        "/console/templates", "/console/templates/edit?kind=email&name=recommended_for_you",
        "/console/templates/edit?kind=push", "/console/audiences", "/console/audiences/new",
        f"/console/audiences/{audience.json()['id']}", "/console/models", "/console/keys",
    ]  # fmt: skip
    for path in pages:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert "Content-Security-Policy" in response.headers
    assert (await client.get("/console/campaigns/999999")).status_code == 404
    assert (await client.get("/console/static/htmx.min.js")).status_code == 200


async def test_console_forms_refuse_bad_input_naming_the_field(client: Client, staff: Context) -> None:
    await sign_in(client, "marketer@shop.example")
    form = await client.get("/console/campaigns/new")
    token = csrf_of(form.text)
    fields = {"csrf_token": token, "name": "x", "channels": "email", "recommendations": "lots"}
    bad = await client.post("/console/campaigns/new", data=fields)
    assert bad.status_code == 422
    assert "recommendations" in bad.text
    bad = await client.post(
        "/console/campaigns/new", data={"csrf_token": token, "name": "x", "more": "{oops"}
    )
    assert bad.status_code == 422
    assert "more settings: not JSON" in bad.text
    estimate = await client.post("/console/audiences/estimate", data={"rules_json": '{"evnt": "view"}'},
                                 headers={"X-CSRF-Token": token})  # fmt: skip
    assert "evnt" in estimate.text
    preview = await client.post(
        "/console/templates/preview",
        data={"kind": "email", "part_subject": "{{ user.nme.upper() }}", "part_html": "<p>x</p>",
              "part_text": "x", "user_id": "nobody"},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip
    assert 'class="error"' in preview.text


async def test_an_audience_built_from_rows_is_estimated_and_saved(
    client: Client, staff: Context, admin
) -> None:
    users = [
        {"user_id": f"u{n}", "email": f"u{n}@example.com", "consents": {"email": n % 2 == 0}}
        for n in range(6)
    ]
    await client.put("/v1/users", json=users, headers=admin)
    await sign_in(client, "marketer@shop.example")
    token = csrf_of((await client.get("/console/audiences/new")).text)
    rows = {
        "csrf_token": token,
        "name": "emailable",
        "match": "all",
        "r0_kind": "consent",
        "r0_channel": "email",
    }
    estimate = await client.post("/console/audiences/estimate", data=rows, headers={"X-CSRF-Token": token})
    assert '<span id="audience-size">3</span>' in estimate.text
    saved = await client.post("/console/audiences/save", data=rows)
    assert saved.status_code == 303
    listed = (await client.get("/v1/audiences", headers=admin)).json()
    assert [(a["name"], a["rules"]) for a in listed] == [("emailable", {"all": [{"consent": "email"}]})]


async def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(client: Client, staff: Context) -> None:
    await sign_in(client, "admin@shop.example")
    token = csrf_of((await client.get("/console/keys")).text)
    created = await client.post("/console/keys", data={"csrf_token": token, "name": "storefront",
                                                       "scopes": ["recs:read", "events:write"]})  # fmt: skip
    assert created.status_code == 200
    secret = re.search(r'<code id="new-key">([^<]+)</code>', created.text)
    assert secret, created.text[:2000]
    headers = {"Authorization": f"Bearer {secret.group(1)}"}
    assert (await client.get("/v1/items/trending", headers=headers)).status_code == 200
    assert secret.group(1) not in (await client.get("/console/keys")).text  # shown once
    key_id = re.search(r"/console/keys/(\d+)/revoke", created.text)
    assert key_id
    await client.post(f"/console/keys/{key_id.group(1)}/revoke", data={"csrf_token": token})
    assert (await client.get("/v1/items/trending", headers=headers)).status_code == 401
    bad = await client.post("/console/keys", data={"csrf_token": token, "name": "x", "scopes": "root"})
    assert bad.status_code == 422
    assert "unknown scope" in bad.text


async def test_only_admins_roll_models_back_and_a_bad_version_is_explained(
    client: Client, staff: Context
) -> None:
    await sign_in(client, "marketer@shop.example")
    token = csrf_of((await client.get("/console/campaigns/new")).text)
    refused = await client.post(
        "/console/models/20260101T000000Z-abcdef/rollback", data={"csrf_token": token}
    )
    assert refused.status_code == 403
    client.cookies.clear()
    await sign_in(client, "admin@shop.example")
    token = csrf_of((await client.get("/console/keys")).text)
    answer = await client.post("/console/models/20260101T000000Z-abcdef/rollback", data={"csrf_token": token})
    assert answer.status_code == 200
    assert "Not rolled back" in answer.text


async def test_a_template_with_a_syntax_error_is_not_saved_and_the_line_is_named(
    client: Client, staff: Context
) -> None:
    await sign_in(client, "marketer@shop.example")
    token = csrf_of((await client.get("/console/templates/edit?kind=push")).text)
    form = {"csrf_token": token, "kind": "push", "name": "flash_sale", "part_title": "Sale",
            "part_body": "line one\n{% if %}\n"}  # fmt: skip
    refused = await client.post("/console/templates/save", data=form)
    assert refused.status_code == 422
    assert "line 2" in refused.text
    form["part_body"] = "Hi {{ user.first_name | default('there') }}, 20% off today"
    saved = await client.post("/console/templates/save", data=form)
    assert saved.status_code == 200
    assert "Saved as version 1" in saved.text
    listed = await client.get("/console/templates")
    assert "flash_sale" in listed.text


async def test_a_marketer_previews_test_sends_dry_runs_and_pauses_a_campaign(
    client: Client, staff: Context, admin
) -> None:
    users = [
        {"user_id": f"u{n}", "email": f"u{n}@example.com", "consents": {"email": n != 2}} for n in range(4)
    ]
    await client.put("/v1/users", json=users, headers=admin)
    await client.put("/v1/items", json=[{"item_id": "tea", "title": "Green tea", "price": 4}], headers=admin)
    spec = {"name": "Tea", "channels": ["email"], "audience": {"attribute": "locale", "exists": False},
            "items": ["tea"], "holdout": 0, "send_at": "2099-01-01T09:00:00Z"}  # fmt: skip
    campaign_id = (await client.post("/v1/campaigns", json=spec, headers=admin)).json()["id"]
    await staff.serving.refresh()  # the catalog, as the serving loop would within a second
    await sign_in(client, "marketer@shop.example")
    detail = await client.get(f"/console/campaigns/{campaign_id}")
    hx = {"X-CSRF-Token": csrf_of(detail.text), "HX-Request": "true"}
    preview = await client.post(
        f"/console/campaigns/{campaign_id}/preview", data={"user_id": "u1"}, headers=hx
    )
    assert 'class="subject"' in preview.text
    assert "Green tea" in preview.text  # in the iframe's srcdoc, escaped
    to = {"addresses": "me@shop.example"}
    sent = await client.post(f"/console/campaigns/{campaign_id}/test-send", data=to, headers=hx)
    assert "email to test address: sent" in sent.text
    dry = await client.post(f"/console/campaigns/{campaign_id}/dry-run", headers=hx)
    assert "Would get it on email</th><td>3" in dry.text  # u2 has no consent
    assert "Skipped: no consent</th><td>1" in dry.text
    launched = await client.post(f"/console/campaigns/{campaign_id}/launch", headers=hx)
    assert launched.status_code == 303
    paused = await client.post(f"/console/campaigns/{campaign_id}/pause", headers=hx)
    assert paused.status_code == 303
    assert (await client.get(f"/v1/campaigns/{campaign_id}", headers=admin)).json()["status"] == "paused"
    twice = await client.post(f"/console/campaigns/{campaign_id}/launch", headers=hx)
    assert twice.status_code == 422  # a paused campaign cannot be launched again: said, not done
