"""Composing messages: recipient + template + items (+ recommendations) -> rendered parts and payload.

The render context every template sees:

    user        id, first_name, name, email, locale, timezone, attributes
    items       the featured items, then recommendations: item_id, title, price, currency,
                url (a signed tracking link), raw_url, image_url, source
    item        the first of them (the item a trigger is about: back in stock, price drop)
    links       unsubscribe, preferences (signed, per recipient)
    shop        name, url
    campaign    id, name (when the message belongs to one), else none
    locale, currency, now

Every item link is unique to the recipient and message, so a click tells who clicked what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import InvalidInput, NotFound
from service.messaging.email_build import Email, build
from service.messaging.links import LinkSigner
from service.messaging.rendering import Page, Renderer
from service.messaging.templates import HTML_PARTS, MessageTemplate, TemplateStore
from service.messaging.text_limits import check_post, shorten
from service.security.crypto import PersonalDataCipher
from service.serving.answers import Answers, Filters
from service.serving.catalog_view import ItemInfo
from service.settings import MessagingSettings
from service.storage.tables import suppressions, user_consents, users

PUSH_TITLE_LIMIT = 65
PUSH_BODY_LIMIT = 240
CLICK_PATH = "/t/click"
UNSUBSCRIBE_PATH = "/u/unsubscribe"
OPEN_PATH = "/t/open"
PREFERENCES_PATH = "/u/preferences"


class NotDeliverable(InvalidInput):
    """The message cannot go to this recipient on this channel (no address, consent withdrawn…)."""


@dataclass(frozen=True)
class Recipient:
    user_id: str
    email: str | None
    push_tokens: tuple[str, ...]
    locale: str | None
    timezone: str | None
    attributes: dict[str, Any]
    consents: dict[str, bool] = field(default_factory=dict)
    suppressed: bool = False  # the email address is on the suppression list

    @property
    def first_name(self) -> str | None:
        value = self.attributes.get("first_name") or self.attributes.get("name")
        return str(value).split()[0] if value else None


@dataclass(frozen=True)
class Rendered:
    kind: str
    channel: str
    template: str
    locale: str
    texts: dict[str, str]  # every part but the HTML one
    payload: dict[str, Any]  # what the channel is handed
    items: list[str]
    page: Page | None = None  # the HTML part, if the template has one

    @property
    def parts(self) -> dict[str, str]:
        """What the recipient sees, part by part (the HTML filled in here: only previews read it)."""
        return self.texts if self.page is None else {**self.texts, "html": self.page.html}


async def load_recipients(
    engine: AsyncEngine, cipher: PersonalDataCipher, user_ids: list[str]
) -> list[Recipient]:
    """The recipients among `user_ids` that exist, contact points decrypted (two queries in all)."""
    suppressed = users.c.email_bidx.in_(select(suppressions.c.email_bidx)).label("suppressed")
    async with engine.connect() as conn:
        rows = (await conn.execute(select(users, suppressed).where(users.c.user_id.in_(user_ids)))).all()
        consent_rows = await conn.execute(
            select(user_consents.c.user_id, user_consents.c.channel, user_consents.c.granted).where(
                user_consents.c.user_id.in_(user_ids)
            )
        )
        consents: dict[str, dict[str, bool]] = {}
        for uid, channel, granted in consent_rows:
            consents.setdefault(uid, {})[channel] = bool(granted)
    found = {row.user_id: _recipient(row, cipher, consents.get(row.user_id, {})) for row in rows}
    return [found[uid] for uid in user_ids if uid in found]


async def load_recipient(engine: AsyncEngine, cipher: PersonalDataCipher, user_id: str) -> Recipient:
    found = await load_recipients(engine, cipher, [user_id])
    if not found:
        raise NotFound(f"no user {user_id!r}")
    return found[0]


def _recipient(row: Any, cipher: PersonalDataCipher, consents: dict[str, bool]) -> Recipient:
    m = row._mapping
    user_id = m["user_id"]

    def plain(column: str, name: str) -> str | None:
        blob = m[column]
        return cipher.decrypt(blob, context=f"users/{user_id}/{name}") if blob else None

    tokens = plain("push_tokens_ct", "push_tokens")
    return Recipient(
        user_id=user_id,
        email=plain("email_ct", "email"),
        push_tokens=tuple(msgspec.json.decode(tokens)) if tokens else (),
        locale=m["locale"],
        timezone=m["timezone"],
        attributes=dict(m["attributes"] or {}),
        consents=consents,
        suppressed=bool(m["suppressed"]),
    )


class Composer:
    def __init__(
        self,
        templates: TemplateStore,
        renderer: Renderer,
        signer: LinkSigner,
        answers: Answers,
        settings: MessagingSettings,
    ) -> None:
        self.templates = templates
        self.renderer = renderer
        self.signer = signer
        self.answers = answers
        self.settings = settings

    # -- items ---------------------------------------------------------------------------------

    def featured(self, item_ids: list[str]) -> list[ItemInfo]:
        catalog = self.answers.state.catalog
        missing = [i for i in item_ids if catalog.get(i) is None]
        if missing:
            raise InvalidInput(
                "unknown items",
                extra=[{"key": "items", "message": f"not in the catalog: {', '.join(missing[:10])}"}],
            )
        return [info for i in item_ids if (info := catalog.get(i)) is not None]

    def recommended(
        self, user_id: str | None, n: int, exclude: set[str], channel: str | None
    ) -> list[tuple[ItemInfo, str]]:
        if n <= 0:
            return []
        filters = Filters(channel=channel, excluded=set(exclude))
        if user_id is None:
            answer = self.answers.trending(n, filters, "7d")
        else:
            answer = self.answers.for_user(user_id, n, filters)
        return [(p.item, p.source) for p in answer.picks]

    def _item(self, info: ItemInfo, source: str, claims: dict[str, Any]) -> dict[str, Any]:
        target = info.url or self.settings.public_url
        return {
            "item_id": info.item_id,
            "title": info.title,
            "price": info.price,
            "currency": info.currency,
            "image_url": info.image_url,
            "raw_url": target,
            "url": self.signer.url(CLICK_PATH, "click", {**claims, "i": info.item_id, "u": target}),
            "source": source,
        }

    # -- context -------------------------------------------------------------------------------

    def context(
        self,
        recipient: Recipient | None,
        items: list[tuple[ItemInfo, str]],
        *,
        key: str,
        locale: str,
        channel: str,
        campaign: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {"k": key, "ch": channel}
        if recipient is not None:
            claims["us"] = recipient.user_id
        rendered_items = [self._item(info, source, claims) for info, source in items]
        links: dict[str, str] = {}
        user: dict[str, Any] = {}
        tz = None
        if recipient is not None:
            links = {
                "unsubscribe": self.signer.url(
                    UNSUBSCRIBE_PATH, "unsubscribe", {"us": recipient.user_id, "ch": channel, "k": key}
                ),
                "preferences": self.signer.url(PREFERENCES_PATH, "preferences", {"us": recipient.user_id}),
                "open": self.signer.url(OPEN_PATH, "open", {"us": recipient.user_id, "k": key}),
            }
            user = {
                "id": recipient.user_id,
                "first_name": recipient.first_name,
                "name": recipient.attributes.get("name"),
                "email": recipient.email,
                "locale": recipient.locale,
                "timezone": recipient.timezone,
                "attributes": recipient.attributes,
            }
            tz = time_zone(recipient.timezone)
        currency = next((i["currency"] for i in rendered_items if i["currency"]), None)
        return {
            "user": user,
            "items": rendered_items,
            "item": rendered_items[0] if rendered_items else None,
            "links": links,
            "shop": {"name": self.settings.shop_name, "url": self.settings.public_url},
            "campaign": campaign,
            "locale": locale,
            "currency": currency,
            "tz": tz,
            "now": datetime.now(UTC),
            **(extra or {}),
        }

    def render_parts(
        self, template: MessageTemplate, context: dict[str, Any]
    ) -> tuple[dict[str, str], Page | None]:
        """The text parts, and the HTML part as a `Page` (CSS is inlined by its structure)."""
        texts: dict[str, str] = {}
        page = None
        for part, source in template.parts.items():
            if part in HTML_PARTS:
                page = self.renderer.render_page(part, source, context)
            else:
                texts[part] = self.renderer.render(part, source, context).strip()
        return texts, page

    # -- messages ------------------------------------------------------------------------------

    async def for_user(
        self,
        recipient: Recipient,
        template_name: str,
        channel: str,
        *,
        key: str,
        item_ids: list[str] | None = None,
        recommendations: int = 6,
        campaign: dict[str, Any] | None = None,
        template_version: int | None = None,
        address: str | None = None,
        template_override: MessageTemplate | None = None,
    ) -> Rendered:
        """An email or push message for one recipient (`address` overrides the email: test sends)."""
        template = template_override or await self.templates.get(
            channel, template_name, locale=recipient.locale, version=template_version
        )
        featured = [(info, "featured") for info in self.featured(item_ids or [])]
        shown = {info.item_id for info, _ in featured}
        recs = self.recommended(recipient.user_id, recommendations, shown, None)
        locale = recipient.locale or template.locale or "en"
        context = self.context(
            recipient, featured + recs, key=key, locale=locale, channel=channel, campaign=campaign
        )
        parts, page = self.render_parts(template, context)
        items = [i["item_id"] for i in context["items"]]
        payload: dict[str, Any]
        if channel == "email":
            to = address or recipient.email
            if not to:
                raise NotDeliverable(f"user {recipient.user_id!r} has no email address")
            assert page is not None, "email templates require an html part (templates.PARTS)"
            msg_id, raw = build(
                Email(
                    sender=self.settings.email_from,
                    to=to,
                    subject=parts["subject"],
                    html=page,
                    text=parts["text"],
                    preheader=parts.get("preheader", ""),
                    unsubscribe_url=context["links"]["unsubscribe"],
                    open_url=context["links"]["open"] if campaign else None,
                    message_id_domain=_domain(self.settings.email_from),
                )
            )
            payload = {
                "sender": self.settings.email_from,
                "to": to,
                "raw": raw.decode(),
                "message_id": msg_id,
            }
        else:
            if not recipient.push_tokens:
                raise NotDeliverable(f"user {recipient.user_id!r} has no push token")
            parts["title"] = shorten(parts["title"], PUSH_TITLE_LIMIT)
            parts["body"] = shorten(parts["body"], PUSH_BODY_LIMIT)
            payload = {
                "tokens": list(recipient.push_tokens),
                "title": parts["title"],
                "body": parts["body"],
                "url": parts.get("url") or None,
                "data": {"delivery": key, "template": template.name},
            }
        return Rendered(template.kind, channel, template.name, template.locale, parts, payload, items, page)

    async def social(
        self,
        template_name: str | None,
        channel: str,
        *,
        key: str,
        locale: str,
        item_ids: list[str],
        text: str | None = None,
        title: str | None = None,
        link: str | None = None,
    ) -> Rendered:
        """A post for one social channel: a template, or text written for it; refused when too long."""
        featured = [(info, "featured") for info in self.featured(item_ids)]
        context = self.context(None, featured, key=key, locale=locale, channel=channel)
        if text is not None:
            source = MessageTemplate(
                "inline",
                "social",
                locale,
                0,
                {"text": text, **({"title": title} if title else {})},
                "request",
            )
        else:
            source = await self.templates.get("social", template_name or "featured_items", locale=locale)
        parts, page = self.render_parts(source, context)
        link = link or (context["item"]["url"] if context["item"] else None)
        counted = f"{parts['text']} {link}" if link and channel in ("x", "weibo") else parts["text"]
        too_long = check_post(channel, counted, parts.get("title"))
        if too_long is not None:
            raise InvalidInput(
                too_long.message(),
                extra=[{"key": f"{channel}.{too_long.field}", "message": too_long.message()}],
            )
        payload = {
            "text": parts["text"],
            "link": link,
            "title": parts.get("title"),
            "html": page.html if page is not None else None,
        }
        if context["item"] and context["item"]["image_url"]:
            payload["image_url"] = context["item"]["image_url"]
        items = [i["item_id"] for i in context["items"]]
        return Rendered("social", channel, source.name, locale, parts, payload, items, page)


def time_zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone called `name`, or None for none or a name that is not one ("America")."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _domain(sender: str) -> str:
    address = sender.rsplit("<", 1)[-1].rstrip(">")
    return address.rsplit("@", 1)[-1] or "shopcast.local"
