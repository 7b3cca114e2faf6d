"""One flow per phase kind. Each reads like the plan's phase: its steps, in order.

A phase's steps plan what must be said (reminders before the deadline, escalations after
it), do the phase's own work, and publish its progress. The tick runs the steps of every
open phase inside its own flow run and then composes everything planned into one digest
per recipient, so a recipient hears once per tick. Each phase also has its own flow, for
running or scheduling one phase alone.

The steps are plain async functions so the tick can run them without a nested flow run:
Prefect 3.8 spends about 2 s creating each nested flow run, 14 s for a tick of 7 phases. The
tick runs them with ``publish=False`` and publishes every open phase's progress once, itself:
one overdue table for the tick, and the tree's counts read once rather than once per phase.
"""

from __future__ import annotations

from prefect import flow

from flows.clock import run_now
from kiemdiem import steps
from tasks.consolidation import assemble_dossiers, consolidate
from tasks.context import get_plan, get_store, to_instant
from tasks.notify import escalate_overdue, plan_reminders
from tasks.progress import publish_progress


async def chase(campaign_id: str, phase_id: str, now: str) -> dict:
    """Remind before the deadline, escalate after it."""
    reminders = await plan_reminders(campaign_id, [phase_id], now)
    escalations = await escalate_overdue(campaign_id, [phase_id], now)
    return {"reminders": reminders, "escalations": escalations}


async def prepare_reports_steps(campaign_id: str, phase_id: str, now: str, *, publish: bool = True) -> dict:
    """Chuẩn bị: draft collective reports reach participants at least 3 working days before the meeting."""
    planned = await chase(campaign_id, phase_id, now)
    if publish:
        await publish_progress(campaign_id, [phase_id], now)
    return planned


async def branch_meeting_steps(campaign_id: str, phase_id: str, now: str, *, publish: bool = True) -> dict:
    """Chi bộ kiểm điểm: the branch's dossier (reports, self-reviews, minutes, classification list)."""
    planned = await chase(campaign_id, phase_id, now)
    if publish:
        await publish_progress(campaign_id, [phase_id], now)
    return planned


async def consolidate_when_due(campaign_id: str, phase_id: str, now: str) -> dict:
    """The committee's first consolidation, once the branches' meetings are past their deadline."""
    store = get_store()
    if not steps.consolidation_due(get_plan(store, campaign_id), phase_id, to_instant(now)):
        return {"mode": "not_yet", "units_updated": []}
    report = await consolidate(campaign_id, now, [], True)
    if steps.rerun_units(report):
        await assemble_dossiers(campaign_id, now, steps.rerun_units(report))
    return report


async def committee_review_steps(campaign_id: str, phase_id: str, now: str, *, publish: bool = True) -> dict:
    """Cấp ủy xem xét, quyết định: committees decide on their organizations and members."""
    planned = await chase(campaign_id, phase_id, now)
    planned["consolidation"] = await consolidate_when_due(campaign_id, phase_id, now)
    if publish:
        await publish_progress(campaign_id, [phase_id], now)
    return planned


async def report_upward_steps(campaign_id: str, phase_id: str, now: str, *, publish: bool = True) -> dict:
    """Báo cáo cấp trên: the committee consolidates, and its report and dossier go up by the deadline."""
    planned = await chase(campaign_id, phase_id, now)
    planned["consolidation"] = await consolidate_when_due(campaign_id, phase_id, now)
    if publish:
        await publish_progress(campaign_id, [phase_id], now)
    return planned


async def remediation_steps(campaign_id: str, phase_id: str, now: str, *, publish: bool = True) -> dict:
    """Khắc phục: remediation plans of collectives and members, with the members' commitments."""
    planned = await chase(campaign_id, phase_id, now)
    if publish:
        await publish_progress(campaign_id, [phase_id], now)
    return planned


PHASE_STEPS = {
    "prepare_reports": prepare_reports_steps,
    "branch_meeting": branch_meeting_steps,
    "committee_review": committee_review_steps,
    "report_upward": report_upward_steps,
    "remediation": remediation_steps,
    # The Hà Tĩnh plan's leaders' dossiers and year-end summary are documents sent up by a date.
    "leaders_dossier": report_upward_steps,
    "summary_report": report_upward_steps,
}



def phase_flow(name: str, steps):
    """A phase as its own flow run, for running or scheduling one phase alone."""

    @flow(name=name, description=steps.__doc__)
    async def run(campaign_id: str, phase_id: str, now: str | None = None) -> dict:
        return await steps(campaign_id, phase_id, run_now(now).isoformat())

    return run


prepare_reports = phase_flow("phase-prepare-reports", prepare_reports_steps)
branch_meeting = phase_flow("phase-branch-meeting", branch_meeting_steps)
committee_review = phase_flow("phase-committee-review", committee_review_steps)
report_upward = phase_flow("phase-report-upward", report_upward_steps)
remediation = phase_flow("phase-remediation", remediation_steps)

PHASE_FLOWS = {
    "prepare_reports": prepare_reports,
    "branch_meeting": branch_meeting,
    "committee_review": committee_review,
    "report_upward": report_upward,
    "remediation": remediation,
}
