"""Every way out, behind one `Channel` protocol, built from settings.

    email     SMTP pool (SHOPCAST_SMTP_URL), else `.eml` files in the outbox
    push      FCM HTTP v1 (SHOPCAST_FCM_CREDENTIALS), else a webhook (SHOPCAST_PUSH_WEBHOOK_URL)
    x         X API v2 (SHOPCAST_X_TOKEN)
    weibo     Weibo statuses/share (SHOPCAST_WEIBO_TOKEN)
    wechat    Official Account publishing (SHOPCAST_WECHAT_APP_ID, _SECRET, _THUMB_MEDIA_ID)
    facebook  Page feed (SHOPCAST_FACEBOOK_PAGE_ID, SHOPCAST_FACEBOOK_TOKEN)
    webhook   a generic social webhook (SHOPCAST_SOCIAL_WEBHOOK_URL, _SECRET)

Each provider's base URL can be overridden (`SHOPCAST_X_API_URL`…), for proxies and tests.
"""

from __future__ import annotations

from pathlib import Path

from service.messaging.channels.base import (
    Channel,
    ChannelNotConfigured,
    Envelope,
    Failed,
    Outcome,
    Retry,
    Sent,
    Unknown,
)
from service.messaging.channels.fcm import FcmChannel, ServiceAccount
from service.messaging.channels.http import HttpClient
from service.messaging.channels.smtp import OutboxChannel, SmtpChannel, SmtpConfig
from service.messaging.channels.social import FacebookChannel, WeiboChannel, XChannel
from service.messaging.channels.webhook import WebhookChannel
from service.messaging.channels.wechat import WeChatChannel
from service.settings import Settings

SOCIAL_CHANNELS = ("x", "weibo", "wechat", "facebook", "webhook")

__all__ = [
    "SOCIAL_CHANNELS",
    "Channel",
    "ChannelNotConfigured",
    "Envelope",
    "Failed",
    "HttpClient",
    "Outcome",
    "Retry",
    "Sent",
    "Unknown",
    "build_channels",
]


def build_channels(settings: Settings, http: HttpClient) -> dict[str, Channel]:
    """The configured channels by name; `email` always exists (the outbox by default)."""
    m = settings.messaging
    p = m.provider
    channels: dict[str, Channel] = {}
    if settings.smtp_url:
        channels["email"] = SmtpChannel(SmtpConfig.from_url(settings.smtp_url))
    else:
        channels["email"] = OutboxChannel(settings.data_dir / "outbox")
    if credentials := p("FCM_CREDENTIALS"):
        account = ServiceAccount.from_file(Path(credentials))
        channels["push"] = FcmChannel(account, http, p("FCM_API_URL") or "https://fcm.googleapis.com")
    elif url := p("PUSH_WEBHOOK_URL"):
        channels["push"] = WebhookChannel("push", url, p("PUSH_WEBHOOK_SECRET") or "", http)
    if token := p("X_TOKEN"):
        channels["x"] = XChannel(token, http, p("X_API_URL") or "https://api.twitter.com")
    if token := p("WEIBO_TOKEN"):
        channels["weibo"] = WeiboChannel(token, http, p("WEIBO_API_URL") or "https://api.weibo.com")
    if (app := p("WECHAT_APP_ID")) and (secret := p("WECHAT_SECRET")):
        channels["wechat"] = WeChatChannel(
            app,
            secret,
            p("WECHAT_THUMB_MEDIA_ID") or "",
            http,
            p("WECHAT_API_URL") or "https://api.weixin.qq.com",
        )
    if (page := p("FACEBOOK_PAGE_ID")) and (token := p("FACEBOOK_TOKEN")):
        channels["facebook"] = FacebookChannel(
            page, token, http, p("FACEBOOK_API_URL") or "https://graph.facebook.com/v19.0"
        )
    if url := p("SOCIAL_WEBHOOK_URL"):
        channels["webhook"] = WebhookChannel("webhook", url, p("SOCIAL_WEBHOOK_SECRET") or "", http)
    return channels
