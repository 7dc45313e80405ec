"""Messaging as the API and the worker use it: preview, transactional send, social posts.

A send is stored before it is tried: the row is written (or found, for a repeated
Idempotency-Key), then this process claims it and makes one attempt at once; what does not go
through stays pending for `shopcast worker`, which retries with backoff.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import Conflict, InvalidInput, NotFound
from service.messaging.channels import SOCIAL_CHANNELS, Channel, HttpClient, build_channels
from service.messaging.compose import Composer, NotDeliverable, Recipient, Rendered, load_recipient
from service.messaging.deliveries import Delivery, DeliveryStore, NewDelivery
from service.messaging.links import LinkSigner
from service.messaging.rendering import Renderer
from service.messaging.sender import AfterBatch, Preparer, Sender
from service.messaging.suppressions import Suppressions
from service.messaging.templates import MessageTemplate, TemplateStore, default_templates_dir
from service.security.crypto import PersonalDataCipher
from service.serving.answers import Answers
from service.settings import Settings
from service.storage.tables import deliveries, social_posts
from service.users.service import forget_push_tokens

INLINE_WORKER = "api"


@dataclass(frozen=True)
class SocialPost:
    id: int
    scheduled_at: datetime
    channels: list[str]
    items: list[str]
    deliveries: list[Delivery]


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()


class Messaging:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, cipher: PersonalDataCipher, answers: Answers
    ) -> None:
        m = settings.messaging
        self.settings = settings
        self.engine = engine
        self.cipher = cipher
        self.renderer = Renderer(m.templates_dir or default_templates_dir())
        self.templates = TemplateStore(engine, self.renderer, m.templates_dir or default_templates_dir())
        self.signer = LinkSigner(settings.resolved_secret_key(), m.public_url)
        self.composer = Composer(self.templates, self.renderer, self.signer, answers, m)
        self.store = DeliveryStore(engine, cipher, m.max_attempts)
        self.suppressions = Suppressions(engine, cipher)
        self.http = HttpClient(m.http_timeout_seconds)
        self._channels: dict[str, Channel] | None = None
        self._sender: Sender | None = None
        self.prepare: Preparer | None = None  # set by campaigns: render campaign rows at claim
        self.after_batch: AfterBatch | None = None

    @property
    def channels(self) -> dict[str, Channel]:
        if self._channels is None:
            self._channels = build_channels(self.settings, self.http)
        return self._channels

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            self._sender = Sender(
                self.store, self.channels, self.settings.messaging, on_stale_tokens=self._forget_tokens
            )
            self._sender.prepare = self.prepare
            self._sender.after_batch = self.after_batch
            self._sender.on_bounce = self._bounced
        return self._sender

    async def _bounced(self, address: str) -> None:
        await self.suppressions.add([address], "hard_bounce")

    async def _forget_tokens(self, user_id: str, tokens: tuple[str, ...]) -> None:
        await forget_push_tokens(self.engine, self.cipher, user_id, tokens)

    def require_channel(self, channel: str) -> None:
        if channel not in self.channels:
            configured = ", ".join(sorted(self.channels))
            raise InvalidInput(
                f"channel {channel!r} is not configured here (configured: {configured})",
                extra=[
                    {
                        "key": "channel",
                        "message": f"no provider configured for {channel}; see README, Messaging",
                    }
                ],
            )

    # -- preview and send ----------------------------------------------------------------------

    async def recipient(self, user_id: str) -> Recipient:
        return await load_recipient(self.engine, self.cipher, user_id)

    async def preview(
        self,
        user_id: str,
        channel: str,
        *,
        template: str | None,
        parts: dict[str, str] | None,
        item_ids: list[str],
        recommendations: int,
        locale: str | None = None,
    ) -> Rendered:
        """Render for one user without storing or sending; missing values fail here, naming the line."""
        recipient = await self.recipient(user_id)
        if locale:
            recipient = Recipient(**{**recipient.__dict__, "locale": locale})
        if parts is not None:
            self.templates.check(channel, parts)
            name = "preview"
            inline = MessageTemplate(name, channel, recipient.locale or "", 0, parts, "request")
            return await self.composer.for_user(
                recipient,
                name,
                channel,
                key="preview",
                item_ids=item_ids,
                recommendations=recommendations,
                template_override=inline,
            )
        assert template is not None
        return await self.composer.for_user(
            recipient, template, channel, key="preview", item_ids=item_ids, recommendations=recommendations
        )

    async def send(
        self,
        idempotency_key: str,
        user_id: str,
        channel: str,
        template: str,
        *,
        item_ids: list[str],
        recommendations: int,
        body: dict[str, Any],
    ) -> tuple[Delivery, bool]:
        """Store the message (once per key), try it once now; (delivery, created)."""
        key = f"message:{idempotency_key}"
        fingerprint = request_hash(body)
        existing = await self.store.by_key(key)
        if existing is not None:
            return await self._same_request(existing, fingerprint), False
        self.require_channel(channel)
        recipient = await self.recipient(user_id)
        consent_channel = "email" if channel == "email" else "push"
        if recipient.consents.get(consent_channel) is False:
            raise NotDeliverable(f"user {user_id!r} has withdrawn consent for {consent_channel}")
        rendered = await self.composer.for_user(
            recipient, template, channel, key=key, item_ids=item_ids, recommendations=recommendations
        )
        payload = {**rendered.payload, "request_hash": fingerprint}
        delivery, created = await self.store.add(
            NewDelivery(
                key=key, kind="message", channel=channel, payload=payload, user_id=user_id, template=template
            )
        )
        if not created:  # the same key raced in from another request
            return await self._same_request(delivery, fingerprint), False
        return await self.attempt_now(delivery), True

    async def _same_request(self, delivery: Delivery, fingerprint: str) -> Delivery:
        stored = await self._payload(delivery)
        if stored.get("request_hash") != fingerprint:
            raise Conflict("this Idempotency-Key was used with a different request")
        return delivery

    async def _payload(self, delivery: Delivery) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            blob = (
                await conn.execute(select(deliveries.c.payload_ct).where(deliveries.c.id == delivery.id))
            ).scalar()
        if blob is None:
            raise NotFound(f"no message {delivery.id}")
        return dict(msgspec.json.decode(self.cipher.decrypt(blob, context=f"deliveries/{delivery.key}")))

    async def attempt_now(self, delivery: Delivery) -> Delivery:
        """One attempt in this process, when the row is due; the row as it stands afterwards."""
        claimed = await self.store.claim(
            INLINE_WORKER, 1, self.settings.messaging.claim_seconds, ids=[delivery.id]
        )
        for d in claimed:
            await self.sender.deliver(d)
        current = await self.store.get(delivery.id)
        assert current is not None
        return current

    async def delivery(self, delivery_id: int) -> Delivery:
        found = await self.store.get(delivery_id)
        if found is None:
            raise NotFound(f"no message {delivery_id}")
        return found

    # -- social --------------------------------------------------------------------------------

    async def post(
        self,
        channels: list[str],
        *,
        template: str | None,
        variants: dict[str, dict[str, str]],
        item_ids: list[str],
        locale: str,
        scheduled_at: datetime | None,
        idempotency_key: str | None,
    ) -> SocialPost:
        """Render and check every channel's post first (all or nothing), then store and send."""
        if idempotency_key:
            async with self.engine.connect() as conn:
                found = (
                    await conn.execute(select(social_posts.c.id).where(social_posts.c.key == idempotency_key))
                ).scalar()
            if found is not None:
                return await self.social_post(int(found))
        unknown = [c for c in channels if c not in SOCIAL_CHANNELS]
        if unknown:
            raise InvalidInput(
                "unknown social channels",
                extra=[
                    {
                        "key": "channels",
                        "message": f"{', '.join(unknown)}; known: {', '.join(SOCIAL_CHANNELS)}",
                    }
                ],
            )
        for channel in channels:
            self.require_channel(channel)
        now = datetime.now(UTC)
        when = scheduled_at or now
        rendered: dict[str, Rendered] = {}
        for channel in channels:
            variant = variants.get(channel, {})
            rendered[channel] = await self.composer.social(
                template,
                channel,
                key=f"social:{idempotency_key or 'new'}:{channel}",
                locale=locale,
                item_ids=item_ids,
                text=variant.get("text"),
                title=variant.get("title"),
                link=variant.get("link"),
            )
        try:
            async with self.engine.begin() as conn:
                post_id = (
                    await conn.execute(
                        insert(social_posts)
                        .values(key=idempotency_key, scheduled_at=when, channels=channels, items=item_ids)
                        .returning(social_posts.c.id)
                    )
                ).scalar_one()
        except IntegrityError as exc:
            raise Conflict("a post with this Idempotency-Key is being created") from exc
        await self.store.add_many(
            NewDelivery(
                key=f"social:{post_id}:{channel}",
                kind="social",
                channel=channel,
                payload=rendered[channel].payload,
                template=rendered[channel].template,
                post_id=post_id,
                not_before=when,
            )
            for channel in channels
        )
        if when <= now:
            for d in await self.store.for_post(post_id):
                await self.attempt_now(d)
        return await self.social_post(post_id)

    async def social_post(self, post_id: int) -> SocialPost:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(social_posts).where(social_posts.c.id == post_id))).first()
        if row is None:
            raise NotFound(f"no social post {post_id}")
        return SocialPost(
            id=row.id,
            scheduled_at=row.scheduled_at,
            channels=list(row.channels),
            items=list(row.items),
            deliveries=await self.store.for_post(post_id),
        )

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()
        elif self._channels is not None:
            for channel in self._channels.values():
                await channel.close()
        await self.http.close()
