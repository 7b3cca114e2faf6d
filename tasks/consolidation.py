from __future__ import annotations

import asyncio
import datetime as dt

from prefect import task
from prefect.cache_policies import NONE
from prefect.events import emit_event

from kiemdiem import steps
from kiemdiem.store.ticks import finish_tick as record_finished_tick
from kiemdiem.store.ticks import touched_units
from tasks.context import get_plan, get_store, to_instant


@task(name="take-results", cache_policy=NONE)
async def take_results(campaign_id: str, now: str | dt.datetime) -> dict:
    """Parse newly received classification lists into results."""
    store = get_store()
    return await asyncio.to_thread(steps.take_results, store, get_plan(store, campaign_id), campaign_id, to_instant(now))


@task(name="consolidate", cache_policy=NONE)
async def consolidate(campaign_id: str, now: str | dt.datetime, changed_units: list[str], first_run: bool) -> dict:
    """Roll results up; when late results change a consolidation, tell Prefect's event stream too."""
    store = get_store()
    report = await asyncio.to_thread(steps.consolidate, store, get_plan(store, campaign_id), campaign_id, to_instant(now), changed_units, first_run=first_run)
    if any(version > 1 for version in report["versions"].values()):
        emit_event(
            event="kiemdiem.consolidation.updated",
            resource={"prefect.resource.id": f"kiemdiem.campaign.{campaign_id}", "prefect.resource.name": campaign_id},
            payload={"units": report["units_updated"], "versions": report["versions"], "now": to_instant(now).isoformat()},
        )
    return report


@task(name="assemble-dossiers", cache_policy=NONE)
async def assemble_dossiers(campaign_id: str, now: str | dt.datetime, unit_codes: list[str]) -> list[dict]:
    """Checklists, archives and generated documents of units with new submissions or a new consolidation."""
    store = get_store()
    instant = to_instant(now)
    units = sorted(set(unit_codes) | set(await asyncio.to_thread(touched_units, store, campaign_id, instant)))
    return await asyncio.to_thread(steps.assemble_dossiers, store, get_plan(store, campaign_id), campaign_id, instant, units)


@task(name="finish-tick", cache_policy=NONE)
async def finish_tick(campaign_id: str, now: str | dt.datetime, summary: dict) -> None:
    await asyncio.to_thread(record_finished_tick, get_store(), campaign_id, to_instant(now), summary)
