"""The tick: one pass over a campaign at its ``now``. Scheduled hourly during a campaign.

A scheduled run takes its scheduled start time as ``now`` (never the wall clock), so a run
that starts a second early still works on the hour it was meant for.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from prefect import flow
from prefect.runtime import flow_run

from flows.phases import PHASE_STEPS
from kiemdiem import steps
from tasks.collect import collect_submissions
from tasks.context import get_plan, get_store, to_instant
from tasks.notify import compose_digests, send_outbox


def tick_now(now: str | None) -> dt.datetime:
    if now:
        return to_instant(now)
    scheduled = flow_run.scheduled_start_time
    if scheduled is not None:
        return dt.datetime.fromisoformat(str(scheduled)) if not isinstance(scheduled, dt.datetime) else scheduled
    return dt.datetime.now(dt.timezone.utc)


@flow(name="kiemdiem-tick")
async def tick(campaign_id: str, now: str | None = None) -> dict:
    instant = tick_now(now)
    at = instant.isoformat()
    store = get_store()
    plan = get_plan(store, campaign_id)
    collected = await collect_submissions(campaign_id, at)
    open_ids = steps.open_phase_ids(plan, instant)
    # Phases are independent: run their steps together so Prefect's API round-trips overlap.
    results = await asyncio.gather(*(PHASE_STEPS[plan.phase(pid).kind](campaign_id, pid, at) for pid in open_ids))
    phases = dict(zip(open_ids, results))
    composed = await compose_digests(campaign_id, at)
    sent = await send_outbox(campaign_id, at)
    return {"now": at, "collected": collected, "phases": phases, "composed": composed, "sent": sent}
