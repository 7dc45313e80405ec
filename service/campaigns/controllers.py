"""Audiences and campaigns (scope `campaigns:write`; reports also `analytics:read`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, post, put
from litestar.params import JSONBody, Parameter, QueryParameter

from service.campaigns.definition import CampaignIn
from service.campaigns.schemas import (
    AudienceIn,
    AudienceOut,
    CampaignOut,
    CampaignPreviewIn,
    Changed,
    DryRunOut,
    EmailsIn,
    EstimateIn,
    EstimateOut,
    Status,
    SuppressIn,
    SuppressionCheck,
    SuppressionCounts,
    TestSendIn,
)
from service.context import Ctx
from service.messaging.schemas import DeliveryOut, PreviewOut

WRITE = {"scopes": ("campaigns:write",)}
READ_REPORT = {"scopes": ("campaigns:write", "analytics:read")}
RowId = Annotated[int, Parameter(ge=1, le=2**62)]


class AudiencesController(Controller):
    path = "/audiences"
    tags = ["campaigns"]
    opt = WRITE

    @post("/", operation_id="createAudience", status_code=201)
    async def create(self, data: JSONBody[AudienceIn], ctx: Ctx) -> AudienceOut:
        """Save audience rules under a name (rules that name unknown fields are 422, with the path)."""
        saved = await ctx.campaigns.store.save_audience(data.name, data.rules, data.description)
        return AudienceOut.of(saved)

    @get("/", operation_id="listAudiences")
    async def list_audiences(self, ctx: Ctx) -> list[AudienceOut]:
        return [AudienceOut.of(a) for a in await ctx.campaigns.store.all_audiences()]

    @post("/estimate", operation_id="estimateAudience", status_code=200)
    async def estimate(self, data: JSONBody[EstimateIn], ctx: Ctx) -> EstimateOut:
        """How many users these rules select now, and how many have consent per channel."""
        return EstimateOut.of(await ctx.campaigns.estimate(data.rules))

    @get("/{audience_id:int}", operation_id="getAudience")
    async def read(self, audience_id: RowId, ctx: Ctx) -> AudienceOut:
        return AudienceOut.of(await ctx.campaigns.store.audience(audience_id))

    @put("/{audience_id:int}", operation_id="replaceAudience")
    async def replace(self, audience_id: RowId, data: JSONBody[AudienceIn], ctx: Ctx) -> AudienceOut:
        saved = await ctx.campaigns.store.save_audience(data.name, data.rules, data.description, audience_id)
        return AudienceOut.of(saved)

    @delete("/{audience_id:int}", operation_id="deleteAudience", status_code=204)
    async def remove(self, audience_id: RowId, ctx: Ctx) -> None:
        """Delete a saved audience no unfinished campaign uses (else 409)."""
        await ctx.campaigns.store.delete_audience(audience_id)

    @get("/{audience_id:int}/estimate", operation_id="estimateSavedAudience")
    async def estimate_saved(self, audience_id: RowId, ctx: Ctx) -> EstimateOut:
        audience = await ctx.campaigns.store.audience(audience_id)
        return EstimateOut.of(await ctx.campaigns.estimate(audience.rules))


class CampaignsController(Controller):
    path = "/campaigns"
    tags = ["campaigns"]
    opt = WRITE

    @post("/", operation_id="createCampaign", status_code=201)
    async def create(self, data: JSONBody[CampaignIn], ctx: Ctx) -> CampaignOut:
        """A new campaign, as a draft: preview it, test-send it, dry-run it, then launch it."""
        return CampaignOut.of(await ctx.campaigns.store.create(data))

    @get("/", operation_id="listCampaigns")
    async def list_campaigns(
        self, ctx: Ctx, status: Annotated[Status | None, QueryParameter()] = None
    ) -> list[CampaignOut]:
        return [CampaignOut.of(c) for c in await ctx.campaigns.store.all(status)]

    @get("/{campaign_id:int}", operation_id="getCampaign")
    async def read(self, campaign_id: RowId, ctx: Ctx) -> CampaignOut:
        return CampaignOut.of(await ctx.campaigns.store.get(campaign_id))

    @put("/{campaign_id:int}", operation_id="replaceCampaign")
    async def replace(self, campaign_id: RowId, data: JSONBody[CampaignIn], ctx: Ctx) -> CampaignOut:
        """New settings for a draft or a scheduled campaign that has not run yet (else 409)."""
        return CampaignOut.of(await ctx.campaigns.store.replace(campaign_id, data))

    @post("/{campaign_id:int}/launch", operation_id="launchCampaign", status_code=200)
    async def launch(self, campaign_id: RowId, ctx: Ctx) -> CampaignOut:
        """Draft -> scheduled: workers start it at `send_at`, the next `cron` slot, or at once."""
        return CampaignOut.of(await ctx.campaigns.launch(campaign_id))

    @post("/{campaign_id:int}/pause", operation_id="pauseCampaign", status_code=200)
    async def pause(self, campaign_id: RowId, ctx: Ctx) -> CampaignOut:
        """Stop sending within seconds (what is in flight finishes); resume picks up where it was."""
        return CampaignOut.of(await ctx.campaigns.store.pause(campaign_id, "paused by staff"))

    @post("/{campaign_id:int}/resume", operation_id="resumeCampaign", status_code=200)
    async def resume(self, campaign_id: RowId, ctx: Ctx) -> CampaignOut:
        return CampaignOut.of(await ctx.campaigns.store.resume(campaign_id))

    @post("/{campaign_id:int}/cancel", operation_id="cancelCampaign", status_code=200)
    async def cancel(self, campaign_id: RowId, ctx: Ctx) -> CampaignOut:
        """Nothing more is sent; what was sent stays in the report."""
        return CampaignOut.of(await ctx.campaigns.store.cancel(campaign_id))

    @post("/{campaign_id:int}/preview", operation_id="previewCampaign", status_code=200)
    async def preview(self, campaign_id: RowId, data: JSONBody[CampaignPreviewIn], ctx: Ctx) -> PreviewOut:
        """The message this user would get (a template needing a missing value fails here, named)."""
        rendered = await ctx.campaigns.preview(campaign_id, data.user_id, data.channel, data.variant)
        return PreviewOut.of(rendered)

    @post("/{campaign_id:int}/test-send", operation_id="testSendCampaign", status_code=202)
    async def test_send(self, campaign_id: RowId, data: JSONBody[TestSendIn], ctx: Ctx) -> list[DeliveryOut]:
        """Send the campaign's email to staff addresses (not counted in the campaign's report)."""
        sent = await ctx.campaigns.test_send(campaign_id, list(data.addresses), data.user_id, data.variant)
        return [DeliveryOut.of(d) for d in sent]

    @post("/{campaign_id:int}/dry-run", operation_id="dryRunCampaign", status_code=200)
    async def dry_run(self, campaign_id: RowId, ctx: Ctx) -> DryRunOut:
        """Who the next run would reach, hold out and skip, and why; nothing is written."""
        return DryRunOut.of(await ctx.campaigns.dry_run(campaign_id))

    @get("/{campaign_id:int}/report", operation_id="campaignReport", opt=READ_REPORT)
    async def report(self, campaign_id: RowId, ctx: Ctx) -> dict[str, Any]:
        """Funnel, attributed conversions and revenue, lift over the holdout with its 95% interval."""
        return await ctx.campaigns.report(campaign_id)


class SuppressionsController(Controller):
    path = "/suppressions"
    tags = ["campaigns"]
    opt = WRITE

    @get("/", operation_id="countSuppressions")
    async def counts(self, ctx: Ctx) -> SuppressionCounts:
        """How many addresses are suppressed, by reason (the list holds keyed hashes, not addresses)."""
        return SuppressionCounts(by_reason=await ctx.messaging.suppressions.counts())

    @post("/", operation_id="suppressEmails", status_code=200)
    async def add(self, data: JSONBody[SuppressIn], ctx: Ctx) -> Changed:
        """Never mail these addresses again (campaigns skip them as `suppressed`)."""
        return Changed(changed=await ctx.messaging.suppressions.add(data.emails, data.reason))

    @post("/check", operation_id="checkSuppressions", status_code=200)
    async def check(self, data: JSONBody[EmailsIn], ctx: Ctx) -> SuppressionCheck:
        return SuppressionCheck(suppressed=await ctx.messaging.suppressions.check(data.emails))

    @post("/remove", operation_id="unsuppressEmails", status_code=200)
    async def remove(self, data: JSONBody[EmailsIn], ctx: Ctx) -> Changed:
        return Changed(changed=await ctx.messaging.suppressions.remove(data.emails))


CAMPAIGN_CONTROLLERS = [AudiencesController, CampaignsController, SuppressionsController]
