"""Signed links: unsubscribe, preferences and click tracking carry a token only shopcast can make.

A token is `<payload>.<signature>`: the payload is compact JSON (base64url) with the purpose,
the claims and an optional expiry; the signature is HMAC-SHA256 over purpose and payload with a
key derived from the service secret for links alone. A token made for one purpose (say,
`click`) never verifies as another (`unsubscribe`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import msgspec

from service.errors import ShopcastError


class InvalidToken(ShopcastError):
    """A link token that was forged, altered, made for something else, or has expired."""

    status_code = 400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: str, base_url: str) -> None:
        self._key = hashlib.sha256(b"shopcast/links/v1\x00" + secret.encode()).digest()
        self.base_url = base_url.rstrip("/")

    def token(self, purpose: str, claims: dict[str, Any], *, ttl_seconds: float | None = None) -> str:
        body: dict[str, Any] = {"p": purpose, "c": claims}
        if ttl_seconds is not None:
            body["x"] = int(time.time() + ttl_seconds)
        payload = _b64(msgspec.json.encode(body))
        return f"{payload}.{self._sign(purpose, payload)}"

    def verify(self, purpose: str, token: str) -> dict[str, Any]:
        """The claims of a genuine, unexpired token for `purpose`; InvalidToken otherwise."""
        payload, _, signature = token.partition(".")
        expected = self._sign(purpose, payload).encode()
        if not payload or not signature or not hmac.compare_digest(signature.encode(), expected):
            raise InvalidToken("this link is not valid (altered, or not made for this)")
        try:
            body = msgspec.json.decode(_unb64(payload))
        except (ValueError, msgspec.DecodeError) as exc:
            raise InvalidToken("this link is not valid (unreadable)") from exc
        if not isinstance(body, dict) or body.get("p") != purpose or not isinstance(body.get("c"), dict):
            raise InvalidToken("this link is not valid (not made for this)")
        if "x" in body and time.time() > float(body["x"]):
            raise InvalidToken("this link has expired")
        claims: dict[str, Any] = body["c"]
        return claims

    def url(self, path: str, purpose: str, claims: dict[str, Any], **kwargs: Any) -> str:
        # a token is base64url and ".", all unreserved in a URL: nothing to quote
        return f"{self.base_url}{path}?t={self.token(purpose, claims, **kwargs)}"

    def _sign(self, purpose: str, payload: str) -> str:
        # one-shot HMAC (`hmac.digest`) runs in C: a message signs about ten links
        return _b64(hmac.digest(self._key, f"{purpose}\x00{payload}".encode(), "sha256")[:20])
