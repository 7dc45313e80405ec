"""Console: campaigns (list, create, edit, preview, test send, dry run, launch, pause, report),
the template editor with live preview, and the audience builder with its size estimate.

Forms become the same msgspec structures the API takes, so the rules and messages are the
API's: a problem is shown beside the form, naming the field, and nothing is saved.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, get_args

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import QueryParameter
from litestar.response import Redirect
from sqlalchemy import select

from service.campaigns.definition import CampaignChannel, CampaignIn
from service.console.web import PREFIX, PathText, RowId, page, signed_in
from service.context import Context, Ctx
from service.errors import InvalidInput, ShopcastError, problem_from_msgspec
from service.messaging.templates import PARTS
from service.storage.tables import users

Query = Annotated[str | None, QueryParameter(max_length=2_000)]
Text = Annotated[str, QueryParameter(max_length=200)]
CHANNELS: tuple[str, ...] = get_args(CampaignChannel)
FORM_FIELDS = ("name", "channels", "audience_id", "templates", "recommendations", "holdout", "send_at")
RULE_ROWS = 5
RULE_KINDS = ("", "event", "inactive_days", "last_purchase_channel", "consent", "attribute", "affinity")
EVENTS = ("view", "click", "add_to_cart", "wishlist", "purchase")


def problems(exc: Exception) -> list[str]:
    """Readable lines for a refusal: the message, then each field it names."""
    if isinstance(exc, msgspec.ValidationError):
        problem = problem_from_msgspec(exc)
        return [f"{problem.key}: {problem.message}"]
    if isinstance(exc, ShopcastError):
        lines = [exc.detail]
        for extra in exc.extra or []:
            where = extra.get("key", "")
            line = f", line {extra['line']}" if extra.get("line") else ""
            lines.append(f"{where}{line}: {extra.get('message', '')}")
        return lines
    return [str(exc)]


async def _sample_user(ctx: Context) -> str:
    async with ctx.engine.connect() as conn:
        first = (await conn.execute(select(users.c.user_id).order_by(users.c.user_id).limit(1))).scalar()
    return str(first or "")


# -- campaigns -----------------------------------------------------------------------------------


@get("/campaigns", include_in_schema=False)
async def campaigns_page(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx)
    return page(ctx, "campaigns.html", session, campaigns=await ctx.campaigns.store.all())


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return msgspec.to_builtins(field.default)
    return field.default_factory() if field.default_factory is not msgspec.NODEFAULT else msgspec.NODEFAULT


def _definition_form(definition: dict[str, Any]) -> dict[str, Any]:
    """What the form shows: its own fields, and the other settings that are not defaults as JSON."""
    defaults = {f.name: _default(f) for f in msgspec.structs.fields(CampaignIn)}
    rest = {
        k: v
        for k, v in definition.items()
        if k not in FORM_FIELDS and v != defaults.get(k, msgspec.NODEFAULT)
    }
    return {
        "name": definition.get("name", ""),
        "channels": definition.get("channels", ["email"]),
        "audience_id": definition.get("audience_id"),
        "templates": definition.get("templates", {}),
        "recommendations": definition.get("recommendations", 6),
        "holdout_percent": round(100 * float(definition.get("holdout", 0.1)), 2),
        "send_at": (definition.get("send_at") or "")[:16],
        "more": json.dumps(rest, indent=2, ensure_ascii=False) if rest else "",
    }


def _definition_from(form: FormMultiDict) -> CampaignIn:
    """The form as a CampaignIn; raises msgspec.ValidationError or ShopcastError naming the field."""
    more_text = str(form.get("more") or "").strip()
    try:
        data: dict[str, Any] = json.loads(more_text) if more_text else {}
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"more settings: not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise InvalidInput('more settings: a JSON object is needed, like {"cron": "0 9 * * 1"}')
    data["name"] = str(form.get("name") or "")
    data["channels"] = form.getall("channels", [])
    templates = {c: str(form.get(f"template_{c}")) for c in CHANNELS if form.get(f"template_{c}")}
    if templates:
        data["templates"] = templates
    audience = str(form.get("audience_id") or "")
    if audience:
        data["audience_id"] = _number("audience_id", audience)
    data["recommendations"] = _number("recommendations", str(form.get("recommendations") or "6"))
    data["holdout"] = _number("holdout", str(form.get("holdout_percent") or "0"), float) / 100
    send_at = str(form.get("send_at") or "")
    if send_at:
        data["send_at"] = send_at + (":00Z" if len(send_at) == 16 else "")
    return msgspec.convert(data, CampaignIn)


def _number(field: str, text: str, kind: type = int) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise InvalidInput(f"{field}: {text!r} is not a number") from None


async def _form_page(
    ctx: Context, session: Any, values: dict[str, Any], errors: list[str], campaign_id: RowId | None
) -> Response[str]:
    templates = await ctx.messaging.templates.all()
    return page(
        ctx,
        "campaign_form.html",
        session,
        status=422 if errors else 200,
        values=values,
        errors=errors,
        campaign_id=campaign_id,
        channels=CHANNELS,
        audiences=await ctx.campaigns.store.all_audiences(),
        templates={k: sorted({t.name for t in templates if t.kind == k}) for k in PARTS},
    )


@get("/campaigns/new", include_in_schema=False)
async def new_campaign(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx, "marketer")
    return await _form_page(ctx, session, _definition_form({}), [], None)


@get("/campaigns/{campaign_id:int}/edit", include_in_schema=False)
async def edit_campaign(request: Request[Any, Any, Any], ctx: Ctx, campaign_id: RowId) -> Response[str]:
    session = await signed_in(request, ctx, "marketer")
    campaign = await ctx.campaigns.store.get(campaign_id)
    values = _definition_form(msgspec.to_builtins(campaign.definition))
    return await _form_page(ctx, session, values, [], campaign_id)


@post("/campaigns/new", include_in_schema=False, status_code=200)
async def create_campaign(request: Request[Any, Any, Any], ctx: Ctx) -> Response[Any]:
    return await _save_campaign(request, ctx, None)


@post("/campaigns/{campaign_id:int}/edit", include_in_schema=False, status_code=200)
async def update_campaign(request: Request[Any, Any, Any], ctx: Ctx, campaign_id: RowId) -> Response[Any]:
    return await _save_campaign(request, ctx, campaign_id)


async def _save_campaign(
    request: Request[Any, Any, Any], ctx: Context, campaign_id: RowId | None
) -> Response[Any]:
    session = await signed_in(request, ctx, "marketer")
    form = await request.form()
    try:
        definition = _definition_from(form)
        store = ctx.campaigns.store
        saved = await (
            store.create(definition) if campaign_id is None else store.replace(campaign_id, definition)
        )
    except (msgspec.ValidationError, ShopcastError) as exc:
        values = {k: form.get(k) for k in ("name", "audience_id", "recommendations", "holdout_percent",
                                           "send_at", "more")}  # fmt: skip
        values["channels"] = form.getall("channels", [])
        values["templates"] = {c: form.get(f"template_{c}") for c in CHANNELS if form.get(f"template_{c}")}
        return await _form_page(ctx, session, values, problems(exc), campaign_id)
    return Redirect(f"{PREFIX}/campaigns/{saved.id}?message=saved", status_code=303)


MESSAGES = {
    "saved": "Saved as a draft: preview it, test-send it, then launch it.",
    "launch": "Launched: workers start it at its time.",
    "pause": "Paused: nothing more goes out until you resume it.",
    "resume": "Resumed.",
    "cancel": "Cancelled: nothing more is sent.",
}


@get("/campaigns/{campaign_id:int}", include_in_schema=False)
async def campaign_page(
    request: Request[Any, Any, Any], ctx: Ctx, campaign_id: RowId, message: Query = None
) -> Response[str]:
    session = await signed_in(request, ctx)
    campaign = await ctx.campaigns.store.get(campaign_id)
    report = await ctx.campaigns.report(campaign_id)
    return page(
        ctx,
        "campaign.html",
        session,
        campaign=campaign,
        settings=json.dumps(msgspec.to_builtins(campaign.definition), indent=2, ensure_ascii=False),
        report=report,
        message=MESSAGES.get(message or ""),
        sample_user=await _sample_user(ctx),
        variants=campaign.definition.variant_names(),
    )


@post("/campaigns/{campaign_id:int}/{action:str}", include_in_schema=False, status_code=200)
async def campaign_action(
    request: Request[Any, Any, Any], ctx: Ctx, campaign_id: RowId, action: PathText
) -> Response[Any]:
    session = await signed_in(request, ctx, "marketer")
    form = await request.form()
    campaigns = ctx.campaigns
    try:
        if action == "preview":
            rendered = await campaigns.preview(
                campaign_id, str(form.get("user_id") or ""), str(form.get("channel") or "email"),
                str(form.get("variant") or "") or None,
            )  # fmt: skip
            return page(ctx, "_preview.html", session, rendered=rendered)
        if action == "test-send":
            addresses = [
                a.strip() for a in str(form.get("addresses") or "").replace(";", ",").split(",") if a.strip()
            ]
            if not addresses:
                raise InvalidInput("addresses: give at least one address")
            sent = await campaigns.test_send(
                campaign_id, addresses, str(form.get("user_id") or "") or None, None
            )
            lines = [
                f"{d.channel} to test address: {d.status}" + (f" ({d.error})" if d.error else "")
                for d in sent
            ]
            return page(ctx, "_message.html", session, kind="ok", message="; ".join(lines))
        if action == "dry-run":
            return page(ctx, "_dry_run.html", session, dry=await campaigns.dry_run(campaign_id))
        if action == "launch":
            await campaigns.launch(campaign_id)
        elif action == "pause":
            await campaigns.store.pause(campaign_id, "paused by staff")
        elif action == "resume":
            await campaigns.store.resume(campaign_id)
        elif action == "cancel":
            await campaigns.store.cancel(campaign_id)
        else:
            raise InvalidInput(f"unknown action {action!r}")
    except ShopcastError as exc:
        return page(
            ctx, "_message.html", session, status=422, kind="error", message=" — ".join(problems(exc))
        )
    return Redirect(f"{PREFIX}/campaigns/{campaign_id}?message={action}", status_code=303)


# -- templates -----------------------------------------------------------------------------------


@get("/templates", include_in_schema=False)
async def templates_page(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx)
    return page(ctx, "templates.html", session, templates=await ctx.messaging.templates.all())


@get("/templates/edit", include_in_schema=False)
async def template_editor(
    request: Request[Any, Any, Any], ctx: Ctx, kind: Text = "email", name: Text = "", locale: Text = ""
) -> Response[str]:
    session = await signed_in(request, ctx, "marketer")
    kind = kind if kind in PARTS else "email"
    parts: dict[str, str] = {}
    if name:
        try:
            parts = dict((await ctx.messaging.templates.get(kind, name, locale=locale or None)).parts)
        except ShopcastError:
            parts = {}
    return page(ctx, "template_edit.html", session, kind=kind, name=name, locale=locale, parts=parts,
                part_names=PARTS[kind][0] + PARTS[kind][1], sample_user=await _sample_user(ctx),
                errors=[], saved=None)  # fmt: skip


def _parts(form: FormMultiDict, kind: str) -> dict[str, str]:
    names = PARTS.get(kind, ((), ()))
    return {
        p: str(form.get(f"part_{p}")) for p in names[0] + names[1] if str(form.get(f"part_{p}") or "").strip()
    }


@post("/templates/preview", include_in_schema=False, status_code=200)
async def template_preview(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx, "marketer")
    form = await request.form()
    kind = str(form.get("kind") or "email")
    try:
        if kind not in ("email", "push"):
            raise InvalidInput("live preview is for email and push templates; social posts preview as posts")
        rendered = await ctx.messaging.preview(
            str(form.get("user_id") or ""), kind, template=None, parts=_parts(form, kind), item_ids=[],
            recommendations=4, locale=str(form.get("locale") or "") or None,
        )  # fmt: skip
    except ShopcastError as exc:
        return page(ctx, "_message.html", session, kind="error", message=" — ".join(problems(exc)))
    return page(ctx, "_preview.html", session, rendered=rendered)


@post("/templates/save", include_in_schema=False, status_code=200)
async def template_save(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx, "marketer")
    form = await request.form()
    kind, name, locale = (
        str(form.get("kind") or ""),
        str(form.get("name") or "").strip(),
        str(form.get("locale") or ""),
    )
    parts = _parts(form, kind)
    errors: list[str] = []
    saved = None
    try:
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise InvalidInput("name: letters, digits, '_', '-' and '.' only")
        saved = await ctx.messaging.templates.save(kind, name, parts, locale=locale)
    except ShopcastError as exc:
        errors = problems(exc)
    names = PARTS.get(kind, (("text",), ()))
    return page(ctx, "template_edit.html", session, status=422 if errors else 200, kind=kind, name=name,
                locale=locale, parts=parts, part_names=names[0] + names[1],
                sample_user=await _sample_user(ctx),
                errors=errors, saved=saved)  # fmt: skip


# -- audiences -----------------------------------------------------------------------------------


@get("/audiences", include_in_schema=False)
async def audiences_page(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx)
    return page(ctx, "audiences.html", session, audiences=await ctx.campaigns.store.all_audiences())


def _builder(
    ctx: Context,
    session: Any,
    *,
    audience: Any = None,
    form: Any = None,
    errors: list[str] | None = None,
    status: int = 200,
) -> Response[str]:
    values = dict(form) if form is not None else {}
    if audience is not None and form is None:
        values = {"name": audience.name, "description": audience.description or "",
                  "rules_json": json.dumps(audience.rules, indent=2, ensure_ascii=False)}  # fmt: skip
    return page(ctx, "audience_form.html", session, status=status, audience=audience, values=values,
                errors=errors or [], rows=RULE_ROWS, kinds=RULE_KINDS, events=EVENTS,
                channels=ctx.settings.api.channels, consents=("email", "push", "sms", "social"))  # fmt: skip


@get("/audiences/new", include_in_schema=False)
async def new_audience(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    return _builder(ctx, await signed_in(request, ctx, "marketer"))


@get("/audiences/{audience_id:int}", include_in_schema=False)
async def audience_page(request: Request[Any, Any, Any], ctx: Ctx, audience_id: RowId) -> Response[str]:
    session = await signed_in(request, ctx, "marketer")
    return _builder(ctx, session, audience=await ctx.campaigns.store.audience(audience_id))


def rules_from(form: FormMultiDict) -> dict[str, Any]:
    """The rule tree from the builder's rows, or from the JSON box when it is filled in."""
    text = str(form.get("rules_json") or "").strip()
    if text:
        try:
            tree = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"rules (JSON): line {exc.lineno}: {exc.msg}") from None
        if not isinstance(tree, dict):
            raise InvalidInput("rules (JSON): a JSON object is needed")
        return tree
    rules = [rule for n in range(RULE_ROWS) if (rule := _row_rule(form, n)) is not None]
    if not rules:
        raise InvalidInput("rules: fill in at least one condition (or the JSON box)")
    return {"any" if form.get("match") == "any" else "all": rules}


def _row_rule(form: FormMultiDict, n: int) -> dict[str, Any] | None:
    def field(name: str) -> str:
        return str(form.get(f"r{n}_{name}") or "").strip()

    kind = field("kind")
    if not kind:
        return None
    days = int(_number(f"condition {n + 1}: days", field("days"))) if field("days") else None
    count = int(_number(f"condition {n + 1}: count", field("count"))) if field("count") else None
    rule: dict[str, Any]
    if kind == "event":
        rule = {"event": field("event") or "view"}
        rule.update({k: v for k, v in (("category", field("category")), ("item", field("item")),
                                        ("channel", field("channel"))) if v})  # fmt: skip
        if days is not None:
            rule["within_days"] = days
        if count is not None:
            rule["min_count"] = count
    elif kind == "inactive_days":
        rule = {"inactive_days": days if days is not None else 30}
    elif kind in ("last_purchase_channel", "consent"):
        rule = {kind: field("channel")}
    elif kind == "attribute":
        rule = {"attribute": field("attribute")}
        rule.update({"equals": field("value")} if field("value") else {"exists": True})
    elif kind == "affinity":
        target = {"item": field("item")} if field("item") else {"category": field("category")}
        rule = {"affinity": target, "top": count or 1000}
    else:
        raise InvalidInput(f"condition {n + 1}: unknown kind {kind!r}")
    return {"not": rule} if form.get(f"r{n}_not") else rule


@post("/audiences/estimate", include_in_schema=False, status_code=200)
async def estimate_audience(request: Request[Any, Any, Any], ctx: Ctx) -> Response[str]:
    session = await signed_in(request, ctx, "marketer")
    form = await request.form()
    try:
        tree = rules_from(form)
        estimate = await ctx.campaigns.estimate(tree)
    except ShopcastError as exc:
        return page(ctx, "_message.html", session, kind="error", message=" — ".join(problems(exc)))
    return page(ctx, "_estimate.html", session, estimate=estimate,
                rules=json.dumps(tree, indent=2, ensure_ascii=False))  # fmt: skip


@post("/audiences/save", include_in_schema=False, status_code=200)
async def save_audience(request: Request[Any, Any, Any], ctx: Ctx) -> Response[Any]:
    session = await signed_in(request, ctx, "marketer")
    form = await request.form()
    store = ctx.campaigns.store
    audience_id = str(form.get("audience_id") or "")
    try:
        tree = rules_from(form)
        name, description = str(form.get("name") or "").strip(), str(form.get("description") or "") or None
        if not name:
            raise InvalidInput("name: an audience needs a name")
        saved = await store.save_audience(name, tree, description, int(audience_id) if audience_id else None)
    except ShopcastError as exc:
        audience = await store.audience(int(audience_id)) if audience_id else None
        return _builder(ctx, session, audience=audience, form=form, errors=problems(exc), status=422)
    return Redirect(f"{PREFIX}/audiences/{saved.id}", status_code=303)


CAMPAIGN_ROUTES = [
    campaigns_page, new_campaign, create_campaign, edit_campaign, update_campaign, campaign_page,
    campaign_action, templates_page, template_editor, template_preview, template_save, audiences_page,
    new_audience, audience_page, estimate_audience, save_audience,
]  # fmt: skip
