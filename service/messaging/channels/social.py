"""Posting to social channels: X, Weibo, Facebook Pages (one request each) and the shapes of their answers.

- X (API v2): `POST {base}/2/tweets` `{"text": …}` with an OAuth 2.0 user-context bearer
  token; 201 `{"data": {"id", "text"}}`. 429 carries `x-rate-limit-reset` (epoch seconds).
  A duplicate post (403, "duplicate content") is permanent.
- Weibo: `POST {base}/2/statuses/share.json`, form `access_token`, `status` (must hold a link of
  the app's safe domain); 200 `{"idstr": …}`. Errors are `{"error", "error_code"}`:
  10022/10023/10024 are rate limits (transient), 10001/10002/10009 system busy (transient),
  21327/21332/21501 token problems and 20019 repeated content (permanent).
- Facebook Page: `POST {base}/{page_id}/feed`, form `message`, `link`, `access_token`;
  200 `{"id": "<page>_<post>"}`. Errors `{"error": {"code", "message", "type"}}`: 4, 17, 32,
  613, 80001 are rate limits, 1 and 2 transient, 190 an invalid token, 506 a duplicate.

Payload (what the sender stores): `{"text", "link"?, "title"?, "image_url"?}`.
"""

from __future__ import annotations

from typing import Any

from service.messaging.channels.base import Envelope, Failed, Outcome, Retry, Sent
from service.messaging.channels.http import HttpClient, NotDelivered, Reply, by_status, retry_after

WEIBO_TRANSIENT = {10001, 10002, 10009, 10022, 10023, 10024}
FACEBOOK_RATE_LIMITS = {4, 17, 32, 613, 80001}
FACEBOOK_TRANSIENT = {1, 2}


def _text_with_link(payload: dict[str, Any]) -> str:
    text = str(payload["text"])
    link = payload.get("link")
    return f"{text} {link}" if link and link not in text else text


class XChannel:
    name = "x"
    resend_safe = False

    def __init__(self, token: str, http: HttpClient, base_url: str = "https://api.twitter.com") -> None:
        self.token = token
        self.http = http
        self.url = f"{base_url.rstrip('/')}/2/tweets"

    async def send(self, envelope: Envelope) -> Outcome:
        try:
            reply = await self.http.call(
                "POST",
                self.url,
                json={"text": _text_with_link(envelope.payload)},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except NotDelivered as exc:
            return exc.outcome
        post_id = reply.field("data", "id")
        if reply.status in (200, 201) and post_id:
            return Sent(str(post_id))
        if reply.status == 403 and "duplicate" in str(reply.body).lower():
            return Failed("X refused a duplicate post")
        return by_status(reply, "X")

    async def close(self) -> None:
        return None


class WeiboChannel:
    name = "weibo"
    resend_safe = False

    def __init__(self, token: str, http: HttpClient, base_url: str = "https://api.weibo.com") -> None:
        self.token = token
        self.http = http
        self.url = f"{base_url.rstrip('/')}/2/statuses/share.json"

    async def send(self, envelope: Envelope) -> Outcome:
        try:
            reply = await self.http.call(
                "POST",
                self.url,
                data={"access_token": self.token, "status": _text_with_link(envelope.payload)},
            )
        except NotDelivered as exc:
            return exc.outcome
        return read_weibo(reply)

    async def close(self) -> None:
        return None


def read_weibo(reply: Reply) -> Outcome:
    code = reply.field("error_code")
    if reply.status == 200 and code is None and (reply.field("idstr") or reply.field("id")):
        return Sent(str(reply.field("idstr") or reply.field("id")))
    if isinstance(code, int):
        message = f"Weibo error {code}: {str(reply.field('error'))[:120]}"
        if code in WEIBO_TRANSIENT:
            return Retry(message, retry_after(reply.headers))
        return Failed(message)
    return by_status(reply, "Weibo")


class FacebookChannel:
    name = "facebook"
    resend_safe = False

    def __init__(
        self, page_id: str, token: str, http: HttpClient, base_url: str = "https://graph.facebook.com/v19.0"
    ) -> None:
        self.token = token
        self.http = http
        self.url = f"{base_url.rstrip('/')}/{page_id}/feed"

    async def send(self, envelope: Envelope) -> Outcome:
        form = {"message": str(envelope.payload["text"]), "access_token": self.token}
        if envelope.payload.get("link"):
            form["link"] = str(envelope.payload["link"])
        try:
            reply = await self.http.call("POST", self.url, data=form)
        except NotDelivered as exc:
            return exc.outcome
        return read_facebook(reply)

    async def close(self) -> None:
        return None


def read_facebook(reply: Reply) -> Outcome:
    if reply.status == 200 and reply.field("id"):
        return Sent(str(reply.field("id")))
    code = reply.field("error", "code")
    if isinstance(code, int):
        message = f"Facebook error {code}: {str(reply.field('error', 'message'))[:120]}"
        if code in FACEBOOK_RATE_LIMITS:
            return Retry(message, retry_after(reply.headers, default=60.0))
        if code in FACEBOOK_TRANSIENT:
            return Retry(message, retry_after(reply.headers))
        return Failed(message)
    return by_status(reply, "Facebook")
