"""The console in a real headless browser (Debian's Chromium, driven by Playwright).

A member of staff signs in, builds an audience and reads its size, creates a campaign for it,
previews it, launches it, and reads its report once a real `shopcast worker` has sent it,
against a real `shopcast serve` and its database. A failing test saves a screenshot and says
where.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, free_port, unavailable, wait_until_ready

SHOPCAST = str(Path(sys.executable).with_name("shopcast"))
CHROMIUM = os.environ.get("SHOPCAST_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
STAFF_EMAIL, STAFF_PASSWORD = "marketing@shop.example", "a long demo password"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Shop:
    def __init__(self, base_url: str, env: dict[str, str]) -> None:
        self.base_url = base_url
        self.env = env


@pytest.fixture
def shop(sqlite_url: str, tmp_path: Path) -> Iterator[Shop]:
    """`shopcast serve` and `shopcast worker` on one database, with a small shop and a staff login."""
    if not Path(CHROMIUM).exists():
        unavailable("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    env = {
        **os.environ,
        "SHOPCAST_DATABASE_URL": sqlite_url.replace("shopcast.db", "browser.db"),
        "SHOPCAST_DATA_DIR": str(tmp_path / "var"),
        "SHOPCAST_SECRET_KEY": SECRET,
        "SHOPCAST_RATE_LIMIT_PER_MINUTE": "0",
        "SHOPCAST_CAMPAIGN_TICK_SECONDS": "0.3",
    }
    subprocess.run([SHOPCAST, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [SHOPCAST, "keys", "create", "--name", "browser", "--scopes", "admin"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [SHOPCAST, "staff", "create", "--email", STAFF_EMAIL, "--role", "marketer", "--password-stdin"],
        env=env, check=True, capture_output=True, input=STAFF_PASSWORD + "\n", text=True,
    )  # fmt: skip
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env["SHOPCAST_PUBLIC_URL"] = base_url
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen([SHOPCAST, "serve", "--port", str(port)], env=env, stdout=sink, stderr=sink)
        worker = subprocess.Popen([SHOPCAST, "worker"], env=env, stdout=sink, stderr=sink)
    try:
        wait_until_ready(base_url, server, log)
        _seed(base_url, key)
        yield Shop(base_url, env)
    finally:
        for process in (worker, server):
            process.terminate()
        for process in (worker, server):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _seed(base_url: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    items = [{"item_id": f"tea-{n}", "title": f"Green tea {n}", "category": "tea", "price": 4 + n,
              "url": f"https://shop.example/tea-{n}"} for n in range(6)]  # fmt: skip
    users = [{"user_id": f"u{n}", "email": f"u{n}@example.com", "consents": {"email": n < 4}, "locale": "en",
              "attributes": {"first_name": f"Ann {n}"}} for n in range(6)]  # fmt: skip
    when = datetime.now(UTC).isoformat()  # inside the dashboard's default period
    events = [{"user_id": f"u{n}", "item_id": f"tea-{n % 3}", "event": "view", "timestamp": when,
               "channel": "web"} for n in range(6)]  # fmt: skip
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        for path, body in (("/v1/items", items), ("/v1/users", users)):
            assert client.put(path, json=body).status_code == 200
        assert client.post("/v1/events", json=events).status_code == 200


@pytest.fixture
def browser_page(shop: Shop, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(base_url=shop.base_url)
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                shot = tmp_path / "console-failure.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failure: {shot}\npage: {page.url}")
            browser.close()


def test_staff_build_an_audience_then_create_preview_launch_and_read_a_campaign(browser_page: object) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/login\?why=signed_out"))
    page.get_by_label("Email").fill(STAFF_EMAIL)
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()  # hot items from the seeded views

    page.get_by_role("link", name="Audiences").click()
    page.get_by_role("link", name="New audience").click()
    page.get_by_label("Name", exact=True).fill("Emailable tea fans")
    page.get_by_label("condition 1").select_option("consent")
    page.locator("select[name=r0_channel]").select_option("email")
    page.get_by_role("button", name="Estimate size").click()
    expect(page.locator("#audience-size")).to_have_text("4")
    page.get_by_role("button", name="Save audience").click()
    expect(page.get_by_role("heading", name="Audience: Emailable tea fans")).to_be_visible()

    page.get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name", exact=True).fill("Tea week")
    page.locator("select[name=audience_id]").select_option(label="Emailable tea fans")
    page.locator("input[name=channels][value=email]").check()
    page.get_by_label("Holdout").fill("0")
    page.get_by_label("More settings").fill('{"items": ["tea-1"]}')  # featured: no model is trained here
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as a draft")

    page.get_by_label("User").fill("u1")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview .subject")).not_to_be_empty()
    expect(page.frame_locator("iframe.mail").locator("body")).to_contain_text("Green tea")

    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_role("status")).to_contain_text("Launched")
    deadline = time.monotonic() + 40  # the worker plans, sends, then marks the campaign completed
    while page.locator("#status").inner_text() != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(page.locator("#r-sent")).to_have_text("4")
    expect(page.locator("#r-planned")).to_have_text("4")
    expect(page.locator("#status")).to_have_text("completed")
