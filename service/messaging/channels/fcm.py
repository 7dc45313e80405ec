"""Push through Firebase Cloud Messaging's HTTP v1 API.

Credentials are a Google service-account JSON file (`SHOPCAST_FCM_CREDENTIALS`): shopcast signs
a JWT (RS256) with its private key, trades it at `token_uri` for an OAuth access token (cached
until shortly before it expires) and sends one `messages:send` request per device token:

    POST {base}/v1/projects/{project_id}/messages:send
    {"message": {"token": …, "notification": {"title": …, "body": …}, "data": {…},
                 "webpush": {"fcm_options": {"link": …}}}}

A token FCM reports `UNREGISTERED` (or `INVALID_ARGUMENT` for the token itself) is returned as
stale, so the sender removes it from the user. 429 and 5xx are retried (honouring
`Retry-After`); 401 refreshes the access token once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from service.messaging.channels.base import Envelope, Failed, Outcome, Retry, Sent, Unknown
from service.messaging.channels.http import HttpClient, NotDelivered, Reply, by_status

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_BASE = "https://fcm.googleapis.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ServiceAccount:
    def __init__(self, info: dict[str, Any]) -> None:
        missing = [k for k in ("project_id", "client_email", "private_key", "token_uri") if not info.get(k)]
        if missing:
            raise ValueError(f"FCM service-account file lacks {', '.join(missing)}")
        self.project_id: str = info["project_id"]
        self.client_email: str = info["client_email"]
        self.token_uri: str = info["token_uri"]
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("FCM service-account private_key is not an RSA key")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> ServiceAccount:
        return cls(json.loads(path.read_text()))

    def assertion(self, now: float) -> str:
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": int(now),
            "exp": int(now) + 3600,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


class FcmChannel:
    name = "push"
    resend_safe = False

    def __init__(self, account: ServiceAccount, http: HttpClient, base_url: str = DEFAULT_BASE) -> None:
        self.account = account
        self.http = http
        self.url = f"{base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    async def _access_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            now = time.time()
            if self._token is not None and not renew and self._token[1] > now + 60:
                return self._token[0]
            reply = await self.http.call(
                "POST",
                self.account.token_uri,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": self.account.assertion(now),
                },
            )
            token = reply.field("access_token")
            if reply.status != 200 or not isinstance(token, str):
                raise NotDelivered(
                    Retry(f"FCM token exchange failed ({reply.status})")
                    if reply.status >= 500 or reply.status == 429
                    else Failed(f"FCM credentials refused ({reply.status})")
                )
            self._token = (token, now + float(reply.field("expires_in") or 3600))
            return token

    async def send(self, envelope: Envelope) -> Outcome:
        p = envelope.payload
        tokens: list[str] = list(p.get("tokens") or [])
        if not tokens:
            return Failed("the user has no push token")
        sent: list[str] = []
        stale: list[str] = []
        trouble: Outcome | None = None
        for token in tokens:
            try:
                outcome = await self._send_one(token, p)
            except NotDelivered as exc:
                outcome = exc.outcome
            if isinstance(outcome, Sent):
                sent.append(outcome.provider_id or "")
            elif isinstance(outcome, Failed) and outcome.stale_tokens:
                stale.append(token)
            elif trouble is None or isinstance(outcome, Unknown):
                trouble = outcome
        if sent:
            return Sent(",".join(sent)[:250], stale_tokens=tuple(stale))
        if trouble is not None and not isinstance(trouble, Failed):
            return trouble
        reason = trouble.reason if isinstance(trouble, Failed) else "every device token is unregistered"
        return Failed(reason, stale_tokens=tuple(stale))

    async def _send_one(self, token: str, p: dict[str, Any]) -> Outcome:
        message: dict[str, Any] = {
            "token": token,
            "notification": {"title": p["title"], "body": p["body"]},
            "data": {str(k): str(v) for k, v in (p.get("data") or {}).items()},
        }
        if p.get("url"):
            message["webpush"] = {"fcm_options": {"link": p["url"]}}
        for renew in (False, True):
            access = await self._access_token(renew=renew)
            reply = await self.http.call(
                "POST", self.url, json={"message": message}, headers={"Authorization": f"Bearer {access}"}
            )
            if reply.status != 401:
                break
        return read_reply(reply, token)

    async def close(self) -> None:
        return None


def read_reply(reply: Reply, token: str) -> Outcome:
    if reply.status == 200:
        return Sent(str(reply.field("name") or ""))
    code = _fcm_error_code(reply)
    if code == "UNREGISTERED" or (reply.status == 404 and code is None):
        return Failed("device token unregistered", stale_tokens=(token,))
    if code == "INVALID_ARGUMENT" and _names_token(reply):
        return Failed("device token invalid", stale_tokens=(token,))
    if code in ("SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR"):
        return Failed(f"FCM refused: {code}")
    return by_status(reply, "FCM")


def _fcm_error_code(reply: Reply) -> str | None:
    for detail in reply.field("error", "details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError"):
            return str(detail.get("errorCode"))
    status = reply.field("error", "status")
    return str(status) if status else None


def _names_token(reply: Reply) -> bool:
    """INVALID_ARGUMENT is about the token when FCM's own error detail says so, not a field violation."""
    details = reply.field("error", "details") or []
    return any(isinstance(d, dict) and str(d.get("@type", "")).endswith("FcmError") for d in details)
