"""Every channel against a real local server that behaves like its provider (tests/fakes.py)."""

from __future__ import annotations

import email
import json
from collections.abc import AsyncIterator
from email import policy
from pathlib import Path

import pytest

from service.messaging.channels import Envelope, Failed, HttpClient, Retry, Sent, Unknown
from service.messaging.channels.fcm import FcmChannel, ServiceAccount
from service.messaging.channels.smtp import OutboxChannel, SmtpChannel, SmtpConfig
from service.messaging.channels.social import FacebookChannel, WeiboChannel, XChannel
from service.messaging.channels.webhook import WebhookChannel
from service.messaging.channels.wechat import WeChatChannel
from service.messaging.email_build import Email, build
from tests.conftest import free_port
from tests.fakes import SLOW, Answer, FakeProviders, FakeSmtp


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(timeout_seconds=1.0)
    yield client
    await client.close()


def mail(to: str = "ana@example.test", subject: str = "Hello") -> Envelope:
    _, raw = build(Email("Shop <shop@example.test>", to, subject, "<p>Hi</p>", "Hi"))
    return Envelope("k1", {"sender": "shop@example.test", "to": to, "raw": raw.decode()})


# -- email ------------------------------------------------------------------------------------


async def test_smtp_delivers_and_reuses_its_connections(smtp: FakeSmtp) -> None:
    channel = SmtpChannel(SmtpConfig.from_url(smtp.url))
    try:
        outcomes = [await channel.send(mail(f"u{i}@example.test")) for i in range(5)]
    finally:
        await channel.close()
    assert all(isinstance(o, Sent) for o in outcomes)
    assert [m[1] for m in smtp.messages] == [[f"u{i}@example.test"] for i in range(5)]
    parsed = email.message_from_bytes(smtp.messages[0][2], policy=policy.default)
    assert parsed["Subject"] == "Hello"
    assert parsed.get_content_type() == "multipart/alternative"
    assert "queued as" in (outcomes[0].provider_id or "")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("stage", "answer", "kind"),
    [
        ("rcpt", "550 5.1.1 No such user", Failed),
        ("rcpt", "451 4.7.1 Greylisted, try later", Retry),
        ("data", "552 5.3.4 Message too big", Failed),
        ("data", "421 4.3.2 Shutting down", Retry),
        ("data", "drop", Unknown),
    ],
)
async def test_smtp_answers_mean_what_they_say(smtp: FakeSmtp, stage: str, answer: str, kind: type) -> None:
    (smtp.answer_rcpt if stage == "rcpt" else smtp.answer_data)(answer)
    channel = SmtpChannel(SmtpConfig.from_url(smtp.url))
    try:
        outcome = await channel.send(mail())
        after = await channel.send(mail("next@example.test"))  # the channel recovers for the next one
    finally:
        await channel.close()
    assert isinstance(outcome, kind), outcome
    assert isinstance(after, Sent)


async def test_smtp_server_gone_is_a_retry_not_a_loss() -> None:
    channel = SmtpChannel(SmtpConfig.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2"))
    outcome = await channel.send(mail())
    await channel.close()
    assert isinstance(outcome, Retry)
    assert "connect" in outcome.reason


async def test_smtp_idle_connection_closed_by_server_is_reopened(smtp: FakeSmtp) -> None:
    channel = SmtpChannel(SmtpConfig.from_url(smtp.url))
    try:
        assert isinstance(await channel.send(mail()), Sent)
        for client in list(channel._all):
            client.close()  # as if the server had timed the idle connection out
        assert isinstance(await channel.send(mail("b@example.test")), Sent)
    finally:
        await channel.close()
    assert len(smtp.messages) == 2


def test_smtp_url_is_read_whole() -> None:
    config = SmtpConfig.from_url("smtp://me%40shop:p%2Fss@mail.example:2525?starttls=1&pool=3&timeout=9")
    assert (config.host, config.port, config.username, config.password) == (
        "mail.example",
        2525,
        "me@shop",
        "p/ss",
    )
    assert config.start_tls is True
    assert config.pool_size == 3
    assert config.timeout == 9
    assert SmtpConfig.from_url("smtps://mail.example").use_tls
    with pytest.raises(ValueError, match="smtp://"):
        SmtpConfig.from_url("http://mail.example")


async def test_outbox_writes_one_file_per_key(tmp_path: Path) -> None:
    outbox = OutboxChannel(tmp_path / "outbox")
    first = await outbox.send(mail())
    again = await outbox.send(mail())
    assert isinstance(first, Sent)
    assert isinstance(again, Sent)
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["k1.eml"]


# -- push -------------------------------------------------------------------------------------


def fcm(providers: FakeProviders, http: HttpClient) -> FcmChannel:
    return FcmChannel(ServiceAccount(providers.fcm_account()), http, providers.base)


def push(*tokens: str) -> Envelope:
    return Envelope(
        "p1", {"tokens": list(tokens), "title": "New for you", "body": "Tea", "data": {"n": 1}}, "u1"
    )


async def test_fcm_signs_in_with_the_service_account_and_sends_per_token(
    providers: FakeProviders, http: HttpClient
) -> None:
    outcome = await fcm(providers, http).send(push("tok-a", "tok-b"))
    assert isinstance(outcome, Sent)
    assert outcome.provider_id
    assert outcome.provider_id.count("messages/") == 2
    assert len(providers.calls["fcm_token"]) == 1, "one access token for both sends"
    sent = providers.calls["fcm"][0]["message"]
    assert sent["token"] == "tok-a"
    assert sent["notification"] == {"title": "New for you", "body": "Tea"}
    assert sent["data"] == {"n": "1"}, "FCM data values must be strings"


async def test_fcm_unregistered_tokens_are_reported_stale(providers: FakeProviders, http: HttpClient) -> None:
    providers.unregistered = {"dead"}
    channel = fcm(providers, http)
    mixed = await channel.send(push("dead", "alive"))
    assert isinstance(mixed, Sent)
    assert mixed.stale_tokens == ("dead",)
    only_dead = await channel.send(push("dead"))
    assert isinstance(only_dead, Failed)
    assert only_dead.stale_tokens == ("dead",)


async def test_fcm_429_and_5xx_are_retries_with_the_providers_delay(
    providers: FakeProviders, http: HttpClient
) -> None:
    providers.script("fcm", Answer(429, {"error": {"status": "RESOURCE_EXHAUSTED"}}, {"Retry-After": "7"}))
    providers.script("fcm", Answer(503, {"error": {"status": "UNAVAILABLE"}}))
    channel = fcm(providers, http)
    limited = await channel.send(push("t"))
    busy = await channel.send(push("t"))
    assert isinstance(limited, Retry)
    assert limited.after == 7
    assert isinstance(busy, Retry)


async def test_a_provider_that_answers_too_late_may_have_it(
    providers: FakeProviders, http: HttpClient
) -> None:
    providers.script("x", SLOW)
    outcome = await XChannel(FakeProviders.X_TOKEN, http, providers.base).send(Envelope("s", {"text": "hi"}))
    assert isinstance(outcome, Unknown), "a timeout after writing the request is never retried blindly"


async def test_push_webhook_is_signed_and_resend_safe(providers: FakeProviders, http: HttpClient) -> None:
    channel = WebhookChannel("push", f"{providers.base}/hooks/push", FakeProviders.WEBHOOK_SECRET, http)
    outcome = await channel.send(push("t"))
    assert isinstance(outcome, Sent)
    assert outcome.provider_id
    assert outcome.provider_id.startswith("hook-")
    assert providers.calls["hook_push"][0]["key"] == "p1"
    assert channel.resend_safe
    forged = WebhookChannel("push", f"{providers.base}/hooks/push", "wrong", http)
    assert isinstance(await forged.send(push("t")), Failed)


# -- social -----------------------------------------------------------------------------------


async def test_x_posts_text_and_refuses_duplicates(providers: FakeProviders, http: HttpClient) -> None:
    channel = XChannel(FakeProviders.X_TOKEN, http, providers.base)
    first = await channel.send(Envelope("s1", {"text": "New tea", "link": "https://shop.test/t"}))
    again = await channel.send(Envelope("s2", {"text": "New tea", "link": "https://shop.test/t"}))
    assert isinstance(first, Sent)
    assert first.provider_id
    assert providers.calls["x"][0] == {"text": "New tea https://shop.test/t"}
    assert isinstance(again, Failed)
    assert "duplicate" in again.reason
    wrong = await XChannel("nope", http, providers.base).send(Envelope("s3", {"text": "x"}))
    assert isinstance(wrong, Failed)
    assert "401" in wrong.reason


async def test_x_rate_limit_reset_header_sets_the_wait(providers: FakeProviders, http: HttpClient) -> None:
    import time

    reset = str(int(time.time()) + 30)
    providers.script("x", Answer(429, {"title": "Too Many Requests"}, {"x-rate-limit-reset": reset}))
    outcome = await XChannel(FakeProviders.X_TOKEN, http, providers.base).send(Envelope("s", {"text": "a"}))
    assert isinstance(outcome, Retry)
    assert outcome.after is not None
    assert 25 <= outcome.after <= 31


async def test_weibo_error_codes(providers: FakeProviders, http: HttpClient) -> None:
    channel = WeiboChannel(FakeProviders.WEIBO_TOKEN, http, providers.base)
    ok = await channel.send(Envelope("w1", {"text": "新品", "link": "https://shop.test/p"}))
    assert isinstance(ok, Sent)
    assert ok.provider_id
    assert providers.calls["weibo"][0]["status"] == "新品 https://shop.test/p"
    providers.script("weibo", Answer(403, {"error": "User requests out of rate limit!", "error_code": 10023}))
    assert isinstance(await channel.send(Envelope("w2", {"text": "a", "link": "https://s.t"})), Retry)
    expired = await WeiboChannel("old", http, providers.base).send(
        Envelope("w3", {"text": "a", "link": "https://s.t"})
    )
    assert isinstance(expired, Failed)
    assert "21327" in expired.reason


async def test_wechat_publishes_a_draft_and_renews_an_expired_token(
    providers: FakeProviders, http: HttpClient
) -> None:
    channel = WeChatChannel(
        FakeProviders.WECHAT_APP, FakeProviders.WECHAT_SECRET, "THUMB", http, providers.base
    )
    first = await channel.send(Envelope("c1", {"text": "本周精选", "title": "精选", "link": "https://s.t"}))
    assert isinstance(first, Sent)
    assert first.provider_id
    assert providers.calls["wechat_draft"][0]["articles"][0]["thumb_media_id"] == "THUMB"
    providers.wechat_tokens.clear()  # WeChat expired the token early: 40001, renew once, go on
    second = await channel.send(Envelope("c2", {"text": "again", "title": "t"}))
    assert isinstance(second, Sent)
    assert len(providers.calls["wechat_token"]) == 2
    providers.script(
        "wechat_publish", Answer(200, {"errcode": 45009, "errmsg": "reach max api daily quota limit"})
    )
    quota = await channel.send(Envelope("c3", {"text": "x", "title": "t"}))
    assert isinstance(quota, Retry)
    assert quota.after == 60


async def test_facebook_page_post_and_its_errors(providers: FakeProviders, http: HttpClient) -> None:
    channel = FacebookChannel("1234", FakeProviders.FACEBOOK_TOKEN, http, providers.base)
    ok = await channel.send(Envelope("f1", {"text": "Our picks", "link": "https://s.t/p"}))
    assert isinstance(ok, Sent)
    assert ok.provider_id
    assert ok.provider_id.startswith("1234_")
    assert providers.calls["facebook"][0]["link"] == "https://s.t/p"
    providers.script("facebook", Answer(400, {"error": {"code": 613, "message": "Calls limit reached"}}))
    assert isinstance(await channel.send(Envelope("f2", {"text": "a"})), Retry)
    bad = await FacebookChannel("1234", "wrong", http, providers.base).send(Envelope("f3", {"text": "a"}))
    assert isinstance(bad, Failed)
    assert "190" in bad.reason


async def test_connection_refused_is_safe_to_retry(http: HttpClient) -> None:
    outcome = await XChannel("t", http, f"http://127.0.0.1:{free_port()}").send(Envelope("s", {"text": "a"}))
    assert isinstance(outcome, Retry)


def test_fcm_account_file_must_be_complete(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"project_id": "p"}))
    with pytest.raises(ValueError, match="client_email"):
        ServiceAccount.from_file(path)
