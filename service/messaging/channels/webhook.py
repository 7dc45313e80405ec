"""A generic webhook, for push providers and social tools shopcast has no adapter for.

    POST {url}
    Content-Type: application/json
    Idempotency-Key: <delivery key>
    X-Shopcast-Timestamp: <unix seconds>
    X-Shopcast-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the shared secret>

    {"id": <delivery key>, "channel": "push" | "social", "user_id": …, "message": {…}}

A 2xx is delivered (an `id` in the JSON answer is kept as the provider's id); 429/5xx are
retried. Receivers are expected to dedupe on `Idempotency-Key`, so a timed-out request is
retried rather than left unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import msgspec

from service.messaging.channels.base import Envelope, Outcome, Sent
from service.messaging.channels.http import HttpClient, NotDelivered, by_status


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookChannel:
    resend_safe = True

    def __init__(self, name: str, url: str, secret: str, http: HttpClient) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.http = http

    async def send(self, envelope: Envelope) -> Outcome:
        body = msgspec.json.encode(
            {
                "id": envelope.key,
                "channel": self.name,
                "user_id": envelope.user_id,
                "message": envelope.payload,
            }
        )
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": envelope.key,
            "X-Shopcast-Timestamp": stamp,
            "X-Shopcast-Signature": signature(self.secret, stamp, body),
        }
        try:
            reply = await self.http.call("POST", self.url, data=body, headers=headers)
        except NotDelivered as exc:
            return exc.outcome
        if 200 <= reply.status < 300:
            provider_id = reply.field("id")
            return Sent(str(provider_id) if provider_id is not None else None)
        return by_status(reply, "webhook")

    async def close(self) -> None:
        return None
