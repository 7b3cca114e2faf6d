"""The periodic steps of a campaign, each one pass at a given ``now``.

Prefect tasks in ``tasks/`` are thin wrappers over these; tests call them directly. Every
step is idempotent: running it again at the same ``now`` changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kiemdiem.notify.transport import SmtpTransport
from kiemdiem.plan import Plan
from kiemdiem.reminders import phase_is_open
from kiemdiem.settings import ReminderSettings, SmtpSettings, reminder_settings, smtp_settings
from kiemdiem.status import STATE_NAMES
from kiemdiem.store.db import Store
from kiemdiem.store.dossiers import assemble_dossier
from kiemdiem.store.intake import collect_drop_folder
from kiemdiem.store.notices import ComposeReport, compose_digests, plan_and_save
from kiemdiem.store.outbox import SendReport, send_due
from kiemdiem.store.queries import campaign_status
from kiemdiem.store.results import ingest_results
from kiemdiem.store.snapshots import consolidate_campaign, latest_hashes, latest_snapshots
from kiemdiem.store.ticks import finish_tick, touched_units

CONSOLIDATING_KINDS = frozenset({"committee_review", "report_upward"})
REMINDER = frozenset({"reminder"})
ESCALATION = frozenset({"escalation"})


def open_phase_ids(plan: Plan, now: dt.datetime) -> list[str]:
    return [p.id for p in plan.phases if phase_is_open(plan, p, now)]


def collect_submissions(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, inbox: Path | None = None) -> dict:
    """Take files from the drop folder. Web uploads are recorded when they arrive; nothing to fetch for them."""
    folder = inbox or store.settings.inbox_dir / campaign_id
    report = collect_drop_folder(store, plan, campaign_id, folder, now)
    return {
        "accepted": len(report.accepted),
        "unchanged": len(report.unchanged),
        "refused": [{"folder": f, "reason": r} for f, r in report.refused],
        "units": sorted({o.unit_code for o in report.accepted}),
    }


def take_results(store: Store, plan: Plan, campaign_id: str, now: dt.datetime) -> dict:
    """Parse newly received classification lists into results; a bad file stays stored, its rows are reported."""
    report = ingest_results(store, plan, campaign_id, now)
    return {**report.as_dict(), "changed_units": sorted(report.changed_units)}


def consolidation_due(plan: Plan, phase_id: str, now: dt.datetime) -> bool:
    """A committee consolidates once the phases it follows (the branches' meetings) are past their deadline."""
    phase = plan.phase(phase_id)
    before = [plan.phase(p).deadline for p in phase.after]
    return now > max(before) if before else True


def consolidate(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, changed_units: list[str], *, first_run: bool) -> dict:
    """Roll results up the tree. Once a committee has consolidated, any late result reruns its
    unit's ancestors only, stores new versions and mails the offices the difference."""
    with store.uow() as uow:
        consolidated = bool(latest_hashes(uow, campaign_id))
    if not consolidated and not first_run:
        return {"mode": "not_yet", "units_updated": [], "versions": {}, "outbox_ids": []}
    report = consolidate_campaign(
        store, plan, campaign_id, now, changed_units=set(changed_units), reason="kết quả nộp muộn" if consolidated else "tổng hợp lần đầu"
    )
    return {
        "mode": report.mode, "units_updated": report.units_updated, "versions": report.versions,
        "outbox_ids": report.outbox_ids, "diff_text": report.diff_text,
    }


def rerun_units(report: dict) -> list[str]:
    """Units whose dossiers a consolidation makes stale in a tick: those a late result changed.
    A first, full consolidation touches every unit; its dossiers are built on demand
    (`kiemdiem dossier`, the dashboard), not all at once inside a tick."""
    return list(report["units_updated"]) if report.get("mode") == "incremental" else []


def assemble_dossiers(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, unit_codes: list[str]) -> list[dict]:
    """Re-assemble the dossiers of the given units (checklist, archive, generated documents); unchanged ones are left alone."""
    if not unit_codes:
        return []
    with store.uow() as uow:
        status = campaign_status(uow, plan, campaign_id, now)
        snapshots = latest_snapshots(uow, campaign_id)
    payloads = {code: snap["payload"] for code, snap in snapshots.items()}
    out_root = store.settings.output_dir / campaign_id / "dossiers"
    children: dict[str, list[str]] = {}
    for c, info in status.units.items():
        if info.parent_code is not None:
            children.setdefault(info.parent_code, []).append(c)
    results = []
    for code in sorted(set(unit_codes)):
        unit = status.units.get(code)
        if unit is None:
            continue
        subtree = {c: payloads[c] for c in _subtree(children, code) if c in payloads}
        for phase in plan.phases_for_kind(unit.kind):
            if not phase.documents:
                continue
            consolidating = phase.kind in CONSOLIDATING_KINDS
            result = assemble_dossier(
                store, plan, campaign_id, code, phase.id, out_root / code / phase.id, now,
                payloads.get(code) if consolidating else None, subtree=(subtree or None) if consolidating else None,
            )
            results.append({"unit": code, "phase": phase.id, "changed": result.changed, "archive": str(result.archive)})
    return results


def _subtree(children: dict[str, list[str]], root: str) -> list[str]:
    out, stack = [], [root]
    while stack:
        code = stack.pop()
        out.append(code)
        stack.extend(children.get(code, ()))
    return out


def _plan(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str], kinds: frozenset[str], settings: ReminderSettings) -> int:
    with store.uow() as uow:
        status = campaign_status(uow, plan, campaign_id, now, due_soon_working_days=settings.due_soon_working_days)
        created = plan_and_save(uow, plan, campaign_id, status, now, set(phase_ids), kinds)
        uow.commit()
    return created


def plan_reminders(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str], settings: ReminderSettings | None = None) -> int:
    """Plan reminder notices for items still owed before their deadline. Returns new notices."""
    return _plan(store, plan, campaign_id, now, phase_ids, REMINDER, settings or reminder_settings())


def escalate_overdue(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str], settings: ReminderSettings | None = None) -> int:
    """Plan escalation notices for overdue items, step by step up the ladder. Returns new notices."""
    return _plan(store, plan, campaign_id, now, phase_ids, ESCALATION, settings or reminder_settings())


def compose(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime,
    settings: ReminderSettings | None = None, smtp: SmtpSettings | None = None,
) -> ComposeReport:
    settings = settings or reminder_settings()
    smtp = smtp or smtp_settings()
    return compose_digests(store, plan, campaign_id, now, submit_url=settings.submit_url, sender=smtp.from_)


async def send_outbox(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime,
    smtp: SmtpSettings | None = None, settings: ReminderSettings | None = None, before_send=None,
) -> SendReport:
    """Deliver due outbox rows, only within working hours: mail waits for the next working morning."""
    if not plan.calendar.is_working_time(now):
        return SendReport()
    smtp = smtp or smtp_settings()
    settings = settings or reminder_settings()
    return await send_due(store, SmtpTransport(smtp), now, smtp=smtp, settings=settings, campaign_id=campaign_id, before_send=before_send)


@dataclass
class PhaseProgress:
    phase_id: str
    name: str
    deadline: str
    units: int
    states: dict[str, int]
    percent: float
    overdue: list[dict] = field(default_factory=list)


def progress(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str] | None = None) -> list[dict]:
    """Per phase: units by state, items complete over the whole tree, and the overdue units."""
    with store.uow() as uow:
        status = campaign_status(uow, plan, campaign_id, now)
    result = []
    for phase in plan.phases:
        if phase_ids is not None and phase.id not in phase_ids:
            continue
        states = {s: 0 for s in STATE_NAMES}
        required = present = 0
        overdue = []
        for code, rows in status.by_unit.items():
            for row in rows:
                if row.phase_id != phase.id:
                    continue
                states[row.state] += 1
                required += row.required
                present += row.present
                if row.state == "overdue":
                    overdue.append(
                        {"unit": code, "name": status.units[code].name, "missing": len(row.missing), "present": row.present, "required": row.required}
                    )
        units = sum(states.values())
        if units == 0:
            continue
        percent = 100.0 if required == 0 else round(100.0 * present / required, 1)
        result.append(asdict(PhaseProgress(phase.id, phase.name, phase.deadline.isoformat(), units, states, percent, overdue)))
    return result


async def tick_once(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime,
    smtp: SmtpSettings | None = None, settings: ReminderSettings | None = None, before_send=None,
) -> dict:
    """The tick's steps in the tick flow's order, without Prefect (tests, benchmarks, one-off runs)."""
    settings = settings or reminder_settings()
    collected = collect_submissions(store, plan, campaign_id, now)
    results = take_results(store, plan, campaign_id, now)
    open_ids = open_phase_ids(plan, now)
    first_run = any(plan.phase(p).kind in CONSOLIDATING_KINDS and consolidation_due(plan, p, now) for p in open_ids)
    consolidated = consolidate(store, plan, campaign_id, now, results["changed_units"], first_run=first_run)
    reminders = plan_reminders(store, plan, campaign_id, now, open_ids, settings)
    escalations = escalate_overdue(store, plan, campaign_id, now, open_ids, settings)
    dossiers = assemble_dossiers(store, plan, campaign_id, now, touched_units(store, campaign_id, now) + rerun_units(consolidated))
    composed = compose(store, plan, campaign_id, now, settings, smtp)
    sent = await send_outbox(store, plan, campaign_id, now, smtp, settings, before_send)
    finish_tick(store, campaign_id, now, {"sent": sent.sent})
    return {
        "collected": collected, "results": results, "consolidated": consolidated, "reminders": reminders,
        "escalations": escalations, "dossiers": dossiers, "composed": composed, "sent": sent,
    }
