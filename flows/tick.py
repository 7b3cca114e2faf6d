"""The tick: one pass over a campaign at its ``now``. Scheduled hourly during a campaign.

With ``fan_out`` > 1 (or ``KIEMDIEM_TICK_PARTS`` > 1) the tick shares its work with other
workers: it plans by batches of subtrees in ``kiemdiem-tick-part`` runs (``flows/fanout.py``)
and gives the same notices, emails and snapshots as the tick without fan-out.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from prefect import flow

from flows.clock import run_now
from flows.fanout import fanned_tick, tick_parts_setting
from flows.phases import PHASE_STEPS
from kiemdiem import steps
from tasks.collect import collect_submissions
from tasks.consolidation import assemble_dossiers, consolidate, finish_tick, take_results
from tasks.context import get_plan, get_store
from tasks.notify import compose_digests, send_outbox
from tasks.progress import publish_progress


@flow(name="kiemdiem-tick")
async def tick(
    campaign_id: str, now: str | None = None, fan_out: int | None = None, part_timeout: float | None = None,
    fan_out_on: Literal["auto", "deployments", "tasks"] = "auto",
) -> dict:
    """``fan_out``: parts to split the tick into (default ``KIEMDIEM_TICK_PARTS``, else 1: no split);
    ``fan_out_on``: where the parts run (``auto``: runs of the tick-part deployment when it exists,
    else this run's task runner); ``part_timeout``: seconds before a part's batch is run here."""
    instant = run_now(now)
    parts = fan_out if fan_out is not None else tick_parts_setting()
    if parts > 1:
        return await fanned_tick(campaign_id, instant, parts, part_timeout, fan_out_on)
    at = instant.isoformat()
    store = get_store()
    plan = get_plan(store, campaign_id)
    collected = await collect_submissions(campaign_id, at)
    results = await take_results(campaign_id, at)
    # Late results rerun the consolidation of their ancestors, once a committee has consolidated.
    consolidated = await consolidate(campaign_id, at, results["changed_units"], False)
    open_ids = steps.phases_to_tick(store, plan, campaign_id, instant)
    # Phases are independent: run their steps together so Prefect's API round-trips overlap.
    phase_results = await asyncio.gather(*(PHASE_STEPS[plan.phase(pid).kind](campaign_id, pid, at, publish=False) for pid in open_ids))
    phases = dict(zip(open_ids, phase_results))
    if open_ids:  # every open phase's progress and one table of overdue units (as the fanned tick does)
        await publish_progress(campaign_id, open_ids, at)
    dossiers = await assemble_dossiers(campaign_id, at, steps.rerun_units(consolidated))
    composed = await compose_digests(campaign_id, at)
    sent = await send_outbox(campaign_id, at)
    await finish_tick(campaign_id, at, {"sent": sent["sent"]})
    return {
        "now": at, "collected": collected, "results": results, "consolidated": consolidated, "phases": phases,
        "dossiers": dossiers, "composed": composed, "sent": sent,
    }
