"""Templates, previews, transactional sends and social posts (scope `campaigns:write`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import HeaderParameter, JSONBody, Parameter

from service.context import Ctx
from service.errors import BadParameter, InvalidInput
from service.messaging.schemas import (
    DeliveryOut,
    PreviewIn,
    PreviewOut,
    SendIn,
    SocialPostIn,
    SocialPostOut,
    TemplateIn,
    TemplateOut,
)
from service.messaging.service import SocialPost

WRITE = {"scopes": ("campaigns:write",)}
IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[!-~]+$",
        description="the same key sends the message once, however often the request is repeated",
    ),
]
OptionalKey = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", max_length=128, pattern=r"^[!-~]+$", required=False)
]
Name = Annotated[str, Parameter(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Locale = Annotated[
    str | None, Parameter(max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$")
]
Kind = Annotated[Literal["email", "push", "social"], Parameter(description="email, push or social")]
RowId = Annotated[int, Parameter(ge=1, le=2**62)]
SCHEDULE_SKEW = timedelta(seconds=60)


class TemplatesController(Controller):
    path = "/templates"
    tags = ["messaging"]
    opt = WRITE

    @post("/", operation_id="saveTemplate", status_code=201)
    async def save(self, data: JSONBody[TemplateIn], ctx: Ctx) -> TemplateOut:
        """Save a new version of a staff template; every part must compile (errors name part and line)."""
        saved = await ctx.messaging.templates.save(
            data.kind, data.name, dict(data.parts), locale=data.locale, note=data.note
        )
        return TemplateOut.of(saved)

    @get("/", operation_id="listTemplates")
    async def list_templates(self, ctx: Ctx) -> list[TemplateOut]:
        """Staff templates (newest version of each locale variant) and the shipped ones."""
        return [TemplateOut.of(t) for t in await ctx.messaging.templates.all()]

    @get("/{kind:str}/{name:str}", operation_id="getTemplate")
    async def read(
        self,
        kind: Kind,
        name: Name,
        ctx: Ctx,
        locale: Locale = None,
        version: Annotated[int | None, Parameter(ge=1, le=1_000_000)] = None,
    ) -> TemplateOut:
        """The template a recipient with `locale` would get (or that exact `version`)."""
        found = await ctx.messaging.templates.get(kind, name, locale=locale, version=version)
        return TemplateOut.of(found)

    @get("/{kind:str}/{name:str}/versions", operation_id="listTemplateVersions")
    async def versions(self, kind: Kind, name: Name, ctx: Ctx) -> list[TemplateOut]:
        """Every saved version of a staff template, per locale."""
        return [TemplateOut.of(t) for t in await ctx.messaging.templates.versions(kind, name)]


class MessagesController(Controller):
    path = "/messages"
    tags = ["messaging"]
    opt = WRITE

    @post("/preview", operation_id="previewMessage", status_code=200)
    async def preview(self, data: JSONBody[PreviewIn], ctx: Ctx) -> PreviewOut:
        """Render a template (stored, or `parts` being edited) for one user; nothing is stored or sent."""
        if (data.template is None) == (data.parts is None):
            raise BadParameter("template", "give either a template name or parts, not both")
        rendered = await ctx.messaging.preview(
            data.user_id,
            data.channel,
            template=data.template,
            parts=dict(data.parts) if data.parts is not None else None,
            item_ids=list(data.items),
            recommendations=data.recommendations,
            locale=data.locale,
        )
        return PreviewOut.of(rendered)

    @post("/send", operation_id="sendMessage", status_code=202)
    async def send(
        self, data: JSONBody[SendIn], ctx: Ctx, idempotency_key: IdempotencyKey
    ) -> Response[DeliveryOut]:
        """Send one transactional message. Stored first, tried at once, retried by workers.

        Repeating the request with the same Idempotency-Key returns the same message (header
        `Idempotent-Replayed: true`) and sends nothing again; a different body with that key is 409.
        """
        delivery, created = await ctx.messaging.send(
            idempotency_key,
            data.user_id,
            data.channel,
            data.template,
            item_ids=list(data.items),
            recommendations=data.recommendations,
            body=msgspec.to_builtins(data),
        )
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(DeliveryOut.of(delivery), status_code=202, headers=headers)

    @get("/{message_id:int}", operation_id="getMessage")
    async def read(self, message_id: RowId, ctx: Ctx) -> DeliveryOut:
        """Where a message stands: pending, sent, failed, unknown (may have gone out), …"""
        return DeliveryOut.of(await ctx.messaging.delivery(message_id))


def _post_out(post: SocialPost) -> SocialPostOut:
    return SocialPostOut(
        id=post.id,
        scheduled_at=post.scheduled_at,
        channels=post.channels,
        items=post.items,
        deliveries=[DeliveryOut.of(d) for d in post.deliveries],
    )


class SocialPostsController(Controller):
    path = "/social/posts"
    tags = ["social"]
    opt = WRITE

    @post("/", operation_id="createSocialPost", status_code=201)
    async def create(
        self, data: JSONBody[SocialPostIn], ctx: Ctx, idempotency_key: OptionalKey = None
    ) -> SocialPostOut:
        """Post to social channels now or at `scheduled_at`, from a template or a text per channel.

        Every channel's post is rendered and checked against that channel's length rules before
        anything is stored: one that is too long refuses the whole request, naming the limit.
        """
        if len(set(data.channels)) != len(data.channels):
            raise InvalidInput("channels repeat", extra=[{"key": "channels", "message": "each channel once"}])
        scheduled = data.scheduled_at
        if scheduled is not None:
            if scheduled.tzinfo is None:
                scheduled = scheduled.replace(tzinfo=UTC)
            if scheduled < datetime.now(UTC) - SCHEDULE_SKEW:
                raise InvalidInput(
                    "scheduled_at is in the past",
                    extra=[{"key": "scheduled_at", "message": "must be in the future"}],
                )
        post_ = await ctx.messaging.post(
            list(data.channels),
            template=data.template,
            variants={c: msgspec.to_builtins(v) for c, v in data.variants.items()},
            item_ids=list(data.items),
            locale=data.locale or "en",
            scheduled_at=scheduled,
            idempotency_key=idempotency_key,
        )
        return _post_out(post_)

    @get("/{post_id:int}", operation_id="getSocialPost")
    async def read(self, post_id: RowId, ctx: Ctx) -> SocialPostOut:
        """The post and, per channel, whether it went out (with the provider's post id)."""
        return _post_out(await ctx.messaging.social_post(post_id))


MESSAGING_CONTROLLERS = [TemplatesController, MessagesController, SocialPostsController]
