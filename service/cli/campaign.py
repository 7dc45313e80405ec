"""`shopcast campaign create|list|launch|pause|resume|cancel|report`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from service.campaigns.definition import CampaignIn
from service.cli.common import run_with_context, say, settings_from_env
from service.context import Context
from service.errors import ShopcastError, problem_from_msgspec

T = TypeVar("T")


def _run(work: Callable[[Context], Awaitable[T]]) -> T:
    try:
        return run_with_context(settings_from_env(), work)
    except ShopcastError as exc:
        details = "".join(f"\n  {p['key']}: {p['message']}" for p in exc.extra or [])
        raise click.ClickException(f"{exc.detail}{details}") from None


@click.group()
def campaign() -> None:
    """Campaigns: create from a JSON file, launch, pause, resume, cancel, and read the report."""


@campaign.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--launch", "launch_now", is_flag=True, help="launch it at once (else it stays a draft)")
def create(spec: Path, launch_now: bool) -> None:
    """Create a campaign from a JSON file shaped like POST /v1/campaigns; prints its id."""
    try:
        definition = msgspec.json.decode(spec.read_bytes(), type=CampaignIn)
    except msgspec.ValidationError as exc:
        problem = problem_from_msgspec(exc)
        raise click.ClickException(f"{spec}: {problem.key}: {problem.message}") from None
    except msgspec.DecodeError as exc:
        raise click.ClickException(f"{spec}: not JSON: {exc}") from None

    async def work(ctx: Context) -> Any:
        created = await ctx.campaigns.store.create(definition)
        return await ctx.campaigns.launch(created.id) if launch_now else created

    made = _run(work)
    say(f"campaign {made.id} ({made.name}) is {made.status}")
    click.echo(made.id)


@campaign.command(name="list")
def list_campaigns() -> None:
    """Every campaign with its status."""
    found = _run(lambda ctx: ctx.campaigns.store.all())
    click.echo(f"{'id':>5}  {'status':<10}  {'run':>3}  {'channels':<20}  name")
    for c in found:
        click.echo(
            f"{c.id:>5}  {c.status:<10}  {c.run:>3}  {','.join(c.definition.channels)[:20]:<20}  {c.name}"
        )


def _transition(name: str, helptext: str) -> None:
    @campaign.command(name=name, help=helptext)
    @click.argument("campaign_id", type=int)
    def command(campaign_id: int) -> None:
        async def work(ctx: Context) -> Any:
            if name == "launch":
                return await ctx.campaigns.launch(campaign_id)
            store = ctx.campaigns.store
            if name == "pause":
                return await store.pause(campaign_id, "paused by staff")
            return await getattr(store, name)(campaign_id)

        moved = _run(work)
        say(f"campaign {moved.id} is {moved.status}")


_transition("launch", "Launch a draft: workers start it at send_at, its next cron slot, or at once.")
_transition("pause", "Pause: nothing more is sent until it resumes.")
_transition("resume", "Resume a paused campaign where it stopped.")
_transition("cancel", "Cancel: nothing more is sent.")


@campaign.command()
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="the report as JSON (the API's shape)")
def report(campaign_id: int, as_json: bool) -> None:
    """What the campaign sent, and earned against its holdout."""
    found = _run(lambda ctx: ctx.campaigns.report(campaign_id))
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    click.echo(format_report(found))


def format_report(r: dict[str, Any]) -> str:
    """The report as a short table for people."""
    f, lift = r["funnel"], r["lift"]
    lines = [f"campaign {r['campaign_id']}: {r['name']} ({r['status']}, {r['runs']} run(s))"]
    if r.get("status_reason"):
        lines.append(f"  {r['status_reason']}")
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(f["skipped"].items())) or "none"
    lines += [
        f"  audience {f['audience']:,}  planned {f['planned']:,}  holdout {f['holdout']:,}",
        f"  skipped: {skipped}",
        f"  sent {f['sent']:,}  failed {f['failed']:,}  unknown {f['unknown']:,}  waiting {f['waiting']:,}",
        f"  opened {f['opened']:,} (unreliable)  clicked {f['clicked']:,}  unsub. {f['unsubscribed']:,}",
        f"  converted {f['converted']:,}  revenue {f['revenue']:,.2f}  (last touch)",
    ]
    t, h = lift["treated"], lift["holdout"]
    lines.append(
        f"  treated  {t['converted']:,}/{t['users']:,} = {t['conversion_rate']:.2%}   "
        f"holdout {h['converted']:,}/{h['users']:,} = {h['conversion_rate']:.2%}"
    )
    if lift["absolute"] is not None:
        lo, hi = lift["absolute_ci95"]
        relative = f"{lift['relative']:+.1%}" if lift["relative"] is not None else "n/a"
        lines.append(
            f"  lift {lift['absolute']:+.2%} points (95% CI {lo:+.2%} to {hi:+.2%}), relative {relative}, "
            f"p = {lift['p_value']:.3f}{'' if r['window_complete'] else '  (window still open)'}"
        )
    for v in r["variants"] if len(r["variants"]) > 1 else []:
        converted = f"{v['converted']}/{v['recipients']}"
        lines.append(f"  variant {v['name']}: {converted} converted, revenue {v['revenue']:,.2f}")
    return "\n".join(lines)
