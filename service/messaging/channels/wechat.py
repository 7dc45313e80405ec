"""Publishing an article on a WeChat Official Account.

1. `GET {base}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…` gives an
   `access_token` valid for `expires_in` seconds (cached; renewed early, and at once when
   WeChat answers 40001/40014/42001);
2. `POST {base}/cgi-bin/draft/add?access_token=…` `{"articles": [{"title", "content",
   "digest", "content_source_url", "thumb_media_id"}]}` gives a draft `media_id`;
3. `POST {base}/cgi-bin/freepublish/submit?access_token=…` `{"media_id"}` gives a `publish_id`.

Every answer is HTTP 200 with `errcode` (0 or absent on success). 45009 (quota), -1 (busy) and
45011 (too frequent) are transient; others permanent. If submit does not answer, the draft
exists but whether it was published is unknown, so the delivery is `Unknown`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from service.messaging.channels.base import Envelope, Failed, Outcome, Retry, Sent, Unknown
from service.messaging.channels.http import HttpClient, NotDelivered, Reply, by_status

TOKEN_ERRORS = {40001, 40014, 42001}
TRANSIENT = {-1, 45009, 45011}


class WeChatError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"WeChat error {code}: {message[:120]}")
        self.code = code


class WeChatChannel:
    name = "wechat"
    resend_safe = False

    def __init__(
        self,
        app_id: str,
        secret: str,
        thumb_media_id: str,
        http: HttpClient,
        base_url: str = "https://api.weixin.qq.com",
    ) -> None:
        self.app_id = app_id
        self.secret = secret
        self.thumb_media_id = thumb_media_id
        self.http = http
        self.base = base_url.rstrip("/")
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def _access_token(self, *, renew: bool = False) -> str:
        async with self._lock:
            if self._token is not None and not renew and self._token[1] > time.time() + 300:
                return self._token[0]
            reply = await self.http.call(
                "GET",
                f"{self.base}/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.app_id, "secret": self.secret},
            )
            _raise_for(reply)
            token = reply.field("access_token")
            if not isinstance(token, str):
                raise WeChatError(0, "no access_token in the answer")
            self._token = (token, time.time() + float(reply.field("expires_in") or 7200))
            return token

    async def _call(self, path: str, body: dict[str, Any]) -> Reply:
        for renew in (False, True):
            token = await self._access_token(renew=renew)
            reply = await self.http.call(
                "POST", f"{self.base}{path}", params={"access_token": token}, json=body
            )
            code = reply.field("errcode")
            if code not in TOKEN_ERRORS:
                break
        _raise_for(reply)
        return reply

    async def send(self, envelope: Envelope) -> Outcome:
        p = envelope.payload
        article = {
            "title": str(p.get("title") or p["text"][:32]),
            "content": str(p.get("html") or p["text"]),
            "digest": str(p["text"])[:120],
            "content_source_url": str(p.get("link") or ""),
            "thumb_media_id": self.thumb_media_id,
            "need_open_comment": 0,
        }
        try:
            draft = await self._call("/cgi-bin/draft/add", {"articles": [article]})
        except NotDelivered as exc:  # nothing is published before submit: a stray draft is harmless
            return Retry(exc.outcome.reason) if isinstance(exc.outcome, Unknown) else exc.outcome
        except WeChatError as exc:
            return _outcome(exc)
        media_id = draft.field("media_id")
        if not media_id:
            return Failed("WeChat draft/add gave no media_id")
        try:
            published = await self._call("/cgi-bin/freepublish/submit", {"media_id": media_id})
        except NotDelivered as exc:
            return exc.outcome
        except WeChatError as exc:
            return _outcome(exc)
        return Sent(str(published.field("publish_id") or media_id))

    async def close(self) -> None:
        return None


def _raise_for(reply: Reply) -> None:
    code = reply.field("errcode")
    if reply.status != 200:
        outcome = by_status(reply, "WeChat")
        raise NotDelivered(outcome)
    if isinstance(code, int) and code != 0:
        raise WeChatError(code, str(reply.field("errmsg") or ""))


def _outcome(exc: WeChatError) -> Outcome:
    if exc.code in TRANSIENT:
        return Retry(str(exc), 60.0 if exc.code == 45009 else None)
    return Failed(str(exc))
