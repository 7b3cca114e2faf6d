from __future__ import annotations

import asyncio
import datetime as dt

from prefect import task
from prefect.cache_policies import NONE

from kiemdiem import steps
from tasks.context import get_plan, get_store, to_instant


@task(name="plan-reminders", cache_policy=NONE)
async def plan_reminders(campaign_id: str, phase_ids: list[str], now: str | dt.datetime) -> int:
    store = get_store()
    return await asyncio.to_thread(steps.plan_reminders, store, get_plan(store, campaign_id), campaign_id, to_instant(now), phase_ids)


@task(name="escalate-overdue", cache_policy=NONE)
async def escalate_overdue(campaign_id: str, phase_ids: list[str], now: str | dt.datetime) -> int:
    store = get_store()
    return await asyncio.to_thread(steps.escalate_overdue, store, get_plan(store, campaign_id), campaign_id, to_instant(now), phase_ids)


@task(name="compose-digests", cache_policy=NONE)
async def compose_digests(campaign_id: str, now: str | dt.datetime) -> dict:
    store = get_store()
    report = await asyncio.to_thread(steps.compose, store, get_plan(store, campaign_id), campaign_id, to_instant(now))
    return {
        "digests": report.digests, "notices": report.notices, "cancelled": report.cancelled,
        "cancelled_delivered": report.cancelled_delivered, "cancelled_past_deadline": report.cancelled_past_deadline,
        "deferred": report.deferred,
    }


@task(name="send-outbox", cache_policy=NONE)
async def send_outbox(campaign_id: str, now: str | dt.datetime) -> dict:
    store = get_store()
    report = await steps.send_outbox(store, get_plan(store, campaign_id), campaign_id, to_instant(now))
    return {
        "sent": report.sent, "failed": report.failed, "gave_up": report.gave_up, "reaped": report.reaped,
        "configuration_error": report.configuration_error,
    }
