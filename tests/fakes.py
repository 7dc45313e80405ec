"""Real local servers that behave like the providers shopcast talks to.

- `FakeSmtp`: an aiosmtpd server on loopback that accepts, or answers a scripted code (421,
  451, 550) at RCPT or DATA, or drops the connection while DATA waits for its answer.
- `FakeProviders`: one aiohttp server with FCM's OAuth token endpoint (it verifies the RS256
  JWT with the service account's public key) and `messages:send`, X's `POST /2/tweets`, Weibo's
  `statuses/share.json`, WeChat's token / draft / freepublish calls, a Facebook Page feed, and
  a webhook that checks its HMAC signature. Each checks auth and payload shape the way the real
  one does; `script(route, *answers)` queues what the next calls get (an HTTP status with a
  body and headers, or `SLOW` to answer after the client's timeout).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SLOW = "slow"


# -- SMTP ------------------------------------------------------------------------------------


class _SmtpHandler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.rcpt_answers: deque[str] = deque()
        self.data_answers: deque[str] = deque()
        self.lock = threading.Lock()
        self.count = 0
        self.delay = 0.0  # seconds DATA waits before its answer (a slow server)
        self.unknown_mailboxes: set[str] = set()  # RCPT answers 550 5.1.1 for these

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            answer = self.rcpt_answers.popleft() if self.rcpt_answers else None
            unknown = address in self.unknown_mailboxes
        if unknown:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            answer = self.data_answers.popleft() if self.data_answers else None
        if answer == "drop":
            with self.lock:  # the server took the message, but the client never hears so
                self.messages.append(
                    (str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content or b""))
                )
            assert server.transport is not None
            server.transport.abort()
            return "250 OK"
        if answer:
            return answer
        with self.lock:
            self.messages.append(
                (str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content or b""))
            )
            self.count += 1
            return f"250 2.0.0 Ok: queued as Q{self.count}"


class FakeSmtp:
    def __init__(self, port: int) -> None:
        self.handler = _SmtpHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)
        self.port = port

    def start(self) -> FakeSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=0&pool=4&timeout=5"

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        with self.handler.lock:
            return list(self.handler.messages)

    def answer_rcpt(self, *answers: str) -> None:
        with self.handler.lock:
            self.handler.rcpt_answers.extend(answers)

    def answer_data(self, *answers: str) -> None:
        with self.handler.lock:
            self.handler.data_answers.extend(answers)


# -- HTTP providers --------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def service_account(token_uri: str) -> tuple[dict[str, str], rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "shopcast-test",
        "client_email": "push@shopcast-test.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": token_uri,
    }
    return info, key.public_key()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeProviders:
    """Every provider API on one loopback server; requests are recorded per route."""

    X_TOKEN = "x-user-token"
    WEIBO_TOKEN = "weibo-token"
    FACEBOOK_TOKEN = "fb-page-token"
    WECHAT_APP, WECHAT_SECRET = "wx-app", "wx-secret"
    WEBHOOK_SECRET = "hook-secret"
    SLOW_SECONDS = 3.0

    def __init__(self) -> None:
        self.calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.scripts: dict[str, deque[Answer | str]] = defaultdict(deque)
        self.public_key: rsa.RSAPublicKey | None = None
        self.fcm_tokens: set[str] = set()
        self.unregistered: set[str] = set()
        self.wechat_tokens: set[str] = set()
        self.counter = 0
        self.base = ""
        self._runner: web.AppRunner | None = None

    def script(self, route: str, *answers: Answer | str) -> None:
        self.scripts[route].extend(answers)

    async def start(self) -> FakeProviders:
        app = web.Application()
        app.router.add_post("/oauth2/token", self._fcm_token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._fcm_send)
        app.router.add_post("/2/tweets", self._x)
        app.router.add_post("/2/statuses/share.json", self._weibo)
        app.router.add_get("/cgi-bin/token", self._wechat_token)
        app.router.add_post("/cgi-bin/draft/add", self._wechat_draft)
        app.router.add_post("/cgi-bin/freepublish/submit", self._wechat_publish)
        app.router.add_post("/{page}/feed", self._facebook)
        app.router.add_post("/hooks/{name}", self._webhook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fcm_account(self) -> dict[str, str]:
        info, self.public_key = service_account(f"{self.base}/oauth2/token")
        return info

    async def _scripted(self, route: str) -> web.Response | None:
        if not self.scripts[route]:
            return None
        answer = self.scripts[route].popleft()
        if answer == SLOW:
            await asyncio.sleep(self.SLOW_SECONDS)
            return web.json_response({"late": True})
        assert isinstance(answer, Answer)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)

    def _next_id(self) -> str:
        self.counter += 1
        return str(1_000_000 + self.counter)

    # FCM ------------------------------------------------------------------------------------

    async def _fcm_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        header, claims, signature = str(form.get("assertion", "")).split(".")
        assert self.public_key is not None
        try:
            self.public_key.verify(
                _unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:
            return web.json_response({"error": "invalid_grant"}, status=400)
        body = json.loads(_unb64(claims))
        if body.get("scope") != "https://www.googleapis.com/auth/firebase.messaging":
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = f"ya29.{self._next_id()}"
        self.fcm_tokens.add(token)
        self.calls["fcm_token"].append(body)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    async def _fcm_send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.fcm_tokens:
            return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401)
        body = await request.json()
        self.calls["fcm"].append(body)
        scripted = await self._scripted("fcm")
        if scripted is not None:
            return scripted
        message = body.get("message", {})
        if not isinstance(message.get("token"), str) or "notification" not in message:
            return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, status=400)
        if any(not isinstance(v, str) for v in message.get("data", {}).values()):
            return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, status=400)
        if message["token"] in self.unregistered:
            detail = {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED",
            }
            error = {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
            return web.json_response({"error": {**error, "details": [detail]}}, status=404)
        project = request.match_info["project"]
        return web.json_response({"name": f"projects/{project}/messages/{self._next_id()}"})

    # X --------------------------------------------------------------------------------------

    async def _x(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.X_TOKEN}":
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        body = await request.json()
        self.calls["x"].append(body)
        scripted = await self._scripted("x")
        if scripted is not None:
            return scripted
        if set(body) - {"text", "media", "reply", "quote_tweet_id"} or not isinstance(body.get("text"), str):
            return web.json_response({"title": "Invalid Request", "status": 400}, status=400)
        if any(c["text"] == body["text"] for c in self.calls["x"][:-1]):
            detail = "You are not allowed to create a Tweet with duplicate content."
            return web.json_response({"detail": detail, "status": 403}, status=403)
        post_id = self._next_id()
        return web.json_response({"data": {"id": post_id, "text": body["text"]}}, status=201)

    # Weibo ----------------------------------------------------------------------------------

    async def _weibo(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.calls["weibo"].append(form)
        scripted = await self._scripted("weibo")
        if scripted is not None:
            return scripted
        if form.get("access_token") != self.WEIBO_TOKEN:
            return web.json_response({"error": "expired_token", "error_code": 21327}, status=401)
        if "http" not in str(form.get("status", "")):
            return web.json_response(
                {"error": "text must contain a safe-domain link", "error_code": 10017}, status=400
            )
        post_id = self._next_id()
        return web.json_response({"id": int(post_id), "idstr": post_id, "text": form["status"]})

    # WeChat ---------------------------------------------------------------------------------

    async def _wechat_token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "client_credential" or (q.get("appid"), q.get("secret")) != (
            self.WECHAT_APP,
            self.WECHAT_SECRET,
        ):
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        token = f"wx-token-{self._next_id()}"
        self.wechat_tokens.add(token)
        self.calls["wechat_token"].append(dict(q))
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _wechat_draft(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") not in self.wechat_tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        body = await request.json()
        self.calls["wechat_draft"].append(body)
        scripted = await self._scripted("wechat_draft")
        if scripted is not None:
            return scripted
        article = (body.get("articles") or [{}])[0]
        if not article.get("title") or not article.get("content") or not article.get("thumb_media_id"):
            return web.json_response({"errcode": 44003, "errmsg": "empty news data"})
        return web.json_response({"media_id": f"MEDIA_{self._next_id()}"})

    async def _wechat_publish(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") not in self.wechat_tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        body = await request.json()
        self.calls["wechat_publish"].append(body)
        scripted = await self._scripted("wechat_publish")
        if scripted is not None:
            return scripted
        return web.json_response({"errcode": 0, "errmsg": "ok", "publish_id": self._next_id()})

    # Facebook -------------------------------------------------------------------------------

    async def _facebook(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.calls["facebook"].append({**form, "page": request.match_info["page"]})
        scripted = await self._scripted("facebook")
        if scripted is not None:
            return scripted
        if form.get("access_token") != self.FACEBOOK_TOKEN:
            error = {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}
            return web.json_response({"error": error}, status=400)
        return web.json_response({"id": f"{request.match_info['page']}_{self._next_id()}"})

    # webhook --------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Shopcast-Timestamp", "")
        expected = (
            "sha256="
            + hmac.new(self.WEBHOOK_SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(request.headers.get("X-Shopcast-Signature", ""), expected):
            return web.json_response({"error": "bad signature"}, status=401)
        name = request.match_info["name"]
        self.calls[f"hook_{name}"].append({"key": request.headers.get("Idempotency-Key"), **json.loads(raw)})
        scripted = await self._scripted(f"hook_{name}")
        if scripted is not None:
            return scripted
        return web.json_response({"id": f"hook-{self._next_id()}"})
