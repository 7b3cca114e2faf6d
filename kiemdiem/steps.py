"""The periodic steps of a campaign, each one pass at a given ``now``.

Prefect tasks in ``tasks/`` are thin wrappers over these; tests call them directly. Every
step is idempotent: running it again at the same ``now`` changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import case, func, select

from kiemdiem.notify.transport import SmtpTransport
from kiemdiem.plan import Plan
from kiemdiem.reminders import current_reminder_offset, phase_is_open
from kiemdiem.rules.base import BASE_KINDS
from kiemdiem.settings import ReminderSettings, SmtpSettings, reminder_settings, smtp_settings
from kiemdiem.status import STATE_NAMES, CampaignStatus
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.dossiers import assemble_dossier
from kiemdiem.store.intake import collect_drop_folder
from kiemdiem.store.models import Member, Notice, Outbox, Unit
from kiemdiem.store.notices import ComposeReport, compose_digests, plan_and_save, recipient_directory
from kiemdiem.store.outbox import SendReport, send_due
from kiemdiem.store.queries import (
    PARTITION_MEMBERS, WHOLE_TREE_MAX_MEMBERS, campaign_status, iter_status_parts, load_units, member_counts, own_counts, own_rows,
)
from kiemdiem.store.results import ingest_results
from kiemdiem.store.snapshots import consolidate_campaign, has_snapshots, latest_snapshots
from kiemdiem.store.ticks import finish_tick, previous_tick, touched_units

CONSOLIDATING_KINDS = frozenset({"committee_review", "report_upward"})
REMINDER = frozenset({"reminder"})
ESCALATION = frozenset({"escalation"})


def open_phase_ids(plan: Plan, now: dt.datetime, since: dt.datetime | None = None) -> list[str]:
    """The phases a tick at ``now`` works on. ``since``, the previous tick's moment: a phase still
    open then is worked on once more, so that an escalation step that came due while no tick ran
    (the window closes a working day after the last step) is sent late rather than never."""
    return [p.id for p in plan.phases if phase_is_open(plan, p, now) or (since is not None and since < now and phase_is_open(plan, p, since))]


def phases_to_tick(store: Store, plan: Plan, campaign_id: str, now: dt.datetime) -> list[str]:
    """``open_phase_ids`` at ``now``, counting from the campaign's previous finished tick."""
    return open_phase_ids(plan, now, previous_tick(store, campaign_id, now))


def collect_submissions(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, inbox: Path | None = None) -> dict:
    """Take files from the drop folder. Web uploads are recorded when they arrive; nothing to fetch for them."""
    folder = inbox or store.settings.inbox_dir / campaign_id
    report = collect_drop_folder(store, plan, campaign_id, folder, now)
    return {
        "accepted": len(report.accepted),
        "unchanged": len(report.unchanged),
        "refused": [{"folder": f, "reason": r} for f, r in report.refused],
        "failed": [{"folder": f, "reason": r} for f, r in report.failed],
        "busy": report.busy,
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
        consolidated = has_snapshots(uow, campaign_id)  # not every unit's hash: a national tick would read 292,000
    if not consolidated and not first_run:
        return {"mode": "not_yet", "units_updated": [], "versions": {}, "outbox_ids": []}
    report = consolidate_campaign(
        store, plan, campaign_id, now, changed_units=set(changed_units), reason="có kết quả nộp sau lần tổng hợp trước" if consolidated else "tổng hợp lần đầu"
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
    """Re-assemble the dossiers of the given units (checklist, archive, generated documents); unchanged ones are left alone.

    Only a unit with a consolidating phase has its subtree read (its units and their newest
    snapshots), each on its own; the others need only their kind. Never the whole campaign: at
    national scale its snapshots take gigabytes, and a late result reaches the root."""
    codes = sorted(set(unit_codes))
    with store.uow() as uow:
        kinds = {}
        for start in range(0, len(codes), 500):
            kinds.update(uow.session.execute(
                select(Unit.code, Unit.kind).where(Unit.campaign_id == campaign_id, Unit.code.in_(codes[start:start + 500]))
            ).all())
    out_root = store.settings.output_dir / campaign_id / "dossiers"
    results = []
    for code in codes:
        phases = [phase for phase in plan.phases_for_kind(kinds[code]) if phase.documents] if code in kinds else []
        subtree: dict[str, dict] = {}
        if any(phase.kind in CONSOLIDATING_KINDS for phase in phases):
            with store.uow() as uow:
                units = load_units(uow, campaign_id, subtree_of=code)
                snapshots = latest_snapshots(uow, campaign_id, [u.code for u in units])
            subtree = {u.code: snapshots[u.code]["payload"] for u in units if u.code in snapshots}
        for phase in phases:
            consolidating = phase.kind in CONSOLIDATING_KINDS
            result = assemble_dossier(
                store, plan, campaign_id, code, phase.id, out_root / code / phase.id, now,
                subtree.get(code) if consolidating else None, subtree=(subtree or None) if consolidating else None,
            )
            results.append({"unit": code, "phase": phase.id, "changed": result.changed, "archive": str(result.archive)})
    return results


def planned_phase_ids(plan: Plan, now: dt.datetime, phase_ids: list[str] | set[str], kinds: frozenset[str]) -> set[str]:
    """The phases among ``phase_ids`` that can have a notice of ``kinds`` at ``now``: a reminder
    needs a reminder offset due (before the deadline), an escalation a deadline passed. Planning
    skips the others without computing their status; ``plan_notices`` would plan nothing for them."""
    wanted = set()
    for pid in phase_ids:
        phase = plan.phase(pid)
        if "reminder" in kinds and current_reminder_offset(plan, phase, now) is not None:
            wanted.add(pid)
        if "escalation" in kinds and now > phase.deadline:
            wanted.add(pid)
    return wanted


def plan_partitioned(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: set[str], kinds: frozenset[str],
    settings: ReminderSettings, *, chosen: set[str] | None = None, max_members: int = PARTITION_MEMBERS,
) -> int:
    """Plan and save the notices of the campaign's units (of ``chosen`` only, if given), one
    partition of units after another (``kiemdiem.store.queries.partition_units``), each partition
    committed on its own. The same notices as planning the whole tree at once: a unit's notices
    depend only on its own items and on who answers for it, looked up in the whole tree.
    Memory stays that of one partition, whatever the size of the tree."""
    phase_ids = planned_phase_ids(plan, now, phase_ids, kinds)
    if not phase_ids:
        return 0
    created = 0
    with store.uow() as uow:
        tree = load_units(uow, campaign_id)  # parents before children (ordered by path)
        counts = member_counts(uow, campaign_id)
        # Who answers for a unit is looked up in the whole tree: escalations climb above a partition.
        directory = recipient_directory(uow, plan, campaign_id, CampaignStatus(now=now, units={u.code: u for u in tree}, by_unit={}))
        units = tree if chosen is None else [u for u in tree if u.code in chosen]
        for part, members, status in iter_status_parts(
            uow, plan, campaign_id, now, units, members=counts,
            due_soon_working_days=settings.due_soon_working_days, phase_ids=phase_ids, max_members=max_members,
        ):
            created += plan_and_save(
                uow, plan, campaign_id, status, now, phase_ids, kinds, directory=directory,
                unit_ids={u.code: u.id for u in part}, member_ids={m.code: m.id for m in members},
            )
            uow.commit()
    return created


def tree_is_large(store: Store, campaign_id: str) -> bool:
    """Whether planning and status go by partitions: more members than ``WHOLE_TREE_MAX_MEMBERS``."""
    with store.uow() as uow:
        members = uow.session.scalar(select(func.count()).select_from(Member).where(Member.campaign_id == campaign_id)) or 0
    return members > WHOLE_TREE_MAX_MEMBERS


def _plan(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str], kinds: frozenset[str], settings: ReminderSettings,
    partitioned: bool | None = None,
) -> int:
    if partitioned is None:
        partitioned = tree_is_large(store, campaign_id)
    if partitioned:
        return plan_partitioned(store, plan, campaign_id, now, set(phase_ids), kinds, settings)
    with store.uow() as uow:
        status = campaign_status(uow, plan, campaign_id, now, due_soon_working_days=settings.due_soon_working_days, partitioned=False)
        created = plan_and_save(uow, plan, campaign_id, status, now, set(phase_ids), kinds)
        uow.commit()
    return created


def plan_reminders(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str], settings: ReminderSettings | None = None,
    *, partitioned: bool | None = None,
) -> int:
    """Plan reminder notices for items still owed before their deadline. Returns new notices.
    ``partitioned``: None chooses by the tree's size (``tree_is_large``); both plan the same notices."""
    return _plan(store, plan, campaign_id, now, phase_ids, REMINDER, settings or reminder_settings(), partitioned)


def escalate_overdue(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str], settings: ReminderSettings | None = None,
    *, partitioned: bool | None = None,
) -> int:
    """Plan escalation notices for overdue items, step by step up the ladder. Returns new notices."""
    return _plan(store, plan, campaign_id, now, phase_ids, ESCALATION, settings or reminder_settings(), partitioned)


# --------------------------------------------------------------------------- a tick fanned out by subtree
#
# A distributed tick splits the tree into batches of subtree roots (the base organizations);
# each batch is planned by its own run, and the units above every batch (the committees over
# the base organizations) by the tick itself. A unit's notices depend only on its own items and
# on who answers for it (its office, its ancestors' offices, the plan's ladder), so planning
# the batches one by one gives exactly the notices planning the whole campaign gives: the
# status is computed for the batch's units, the recipients are looked up in the whole tree.


def split_tree(store: Store, campaign_id: str, parts: int) -> dict:
    """Split the campaign's tree into at most ``parts`` batches of subtree roots of about equal work.

    Returns ``{"batches": [[root codes]], "rest": [codes], "owner": {code: batch index or -1}}``:
    every unit belongs to exactly one batch (it lies in one of its roots' subtrees) or to the
    rest (units above the roots). Roots are the topmost base organizations; when there are fewer
    of those than ``parts``, the biggest root is replaced by its children (and joins the rest)
    until there are enough. Deterministic: the same tree gives the same split.
    """
    with store.uow() as uow:
        units = load_units(uow, campaign_id)  # parents before children (ordered by path)
        members = dict(
            uow.session.execute(select(Member.unit_id, func.count()).where(Member.campaign_id == campaign_id).group_by(Member.unit_id)).all()
        )
    if not units:
        return {"batches": [], "rest": [], "owner": {}}
    order = {u.code: i for i, u in enumerate(units)}
    children: dict[str, list[str]] = {}
    for u in units:
        if u.parent_code is not None and u.parent_code in order:
            children.setdefault(u.parent_code, []).append(u.code)
    weight = {u.code: 1 + members.get(u.id, 0) for u in units}  # a unit's own work: its items and its members' items
    for u in reversed(units):  # children come after their parents: add each subtree's weight to its parent
        if u.parent_code in weight:
            weight[u.parent_code] += weight[u.code]
    by_code = {u.code: u for u in units}

    def topmost_base(code: str) -> bool:
        parent = by_code[code].parent_code
        while parent is not None and parent in by_code:
            if by_code[parent].kind in BASE_KINDS:
                return False
            parent = by_code[parent].parent_code
        return True

    roots = [u.code for u in units if u.kind in BASE_KINDS and topmost_base(u.code)]
    if not roots:
        roots = [u.code for u in units if u.parent_code is None or u.parent_code not in by_code]
    while len(roots) < parts:
        expandable = [r for r in roots if children.get(r)]
        if not expandable:
            break
        biggest = max(expandable, key=lambda r: (weight[r], -order[r]))
        at = roots.index(biggest)
        roots[at:at + 1] = children[biggest]
    # Largest subtree first, each to the lightest batch so far (ties: the lower index).
    count = max(1, min(parts, len(roots)))
    loads = [0] * count
    batches: list[list[str]] = [[] for _ in range(count)]
    for root in sorted(roots, key=lambda r: (-weight[r], order[r])):
        index = min(range(count), key=lambda i: (loads[i], i))
        batches[index].append(root)
        loads[index] += weight[root]
    batches = [sorted(b, key=order.__getitem__) for b in batches if b]
    owner = {code: -1 for code in order}
    for index, batch in enumerate(batches):
        for root in batch:
            for code in _descendants(children, root):
                owner[code] = index
    rest = [code for code in order if owner[code] == -1]
    return {"batches": batches, "rest": rest, "owner": owner}


def plan_units(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime, phase_ids: list[str], *,
    roots: list[str] | tuple[str, ...] = (), units: list[str] | tuple[str, ...] = (),
    kinds: frozenset[str] = REMINDER | ESCALATION, settings: ReminderSettings | None = None,
) -> int:
    """Plan the notices due at ``now`` for the units in the subtrees of ``roots`` and for ``units``
    themselves: the same notices ``plan_reminders`` and ``escalate_overdue`` plan for those units
    over the whole campaign. Idempotent; concurrent calls on disjoint units do not collide.
    Planned partition by partition (``plan_partitioned``), so a batch of any size fits in memory.
    Returns new notices."""
    if not phase_ids or not (roots or units):
        return 0
    settings = settings or reminder_settings()
    with store.uow() as uow:
        tree = load_units(uow, campaign_id)
    children: dict[str, list[str]] = {}
    for u in tree:
        if u.parent_code is not None:
            children.setdefault(u.parent_code, []).append(u.code)
    known = {u.code for u in tree}
    chosen = set(units) & known
    for root in roots:
        if root in known:
            chosen.update(_descendants(children, root))
    del tree, children
    if not chosen:
        return 0
    # Reminders and escalations of a phase never coincide (a reminder is due up to its deadline,
    # an escalation after it): one pass over the units' status plans both, the notices the
    # separate passes of ``plan_reminders`` and ``escalate_overdue`` plan.
    return plan_partitioned(store, plan, campaign_id, now, set(phase_ids), kinds, settings, chosen=chosen)


def _descendants(children: dict[str, list[str]], root: str) -> list[str]:
    """``root`` and every unit below it."""
    out, stack = [], [root]
    while stack:
        code = stack.pop()
        out.append(code)
        stack.extend(children.get(code, ()))
    return out


def compose(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime,
    settings: ReminderSettings | None = None, smtp: SmtpSettings | None = None,
) -> ComposeReport:
    settings = settings or reminder_settings()
    smtp = smtp or smtp_settings()
    return compose_digests(store, plan, campaign_id, now, submit_url=settings.submit_url, sender=smtp.from_, drop_share=settings.drop_share)


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
    """Per phase: units by state, items complete over the whole tree, and the overdue units.
    From each unit's own item counts, set-based in SQL (``queries.own_counts``): no item is
    built, whatever the size of the tree."""
    phases = [p for p in plan.phases if phase_ids is None or p.id in phase_ids]
    wanted = {p.id for p in phases}
    states = {p.id: {s: 0 for s in STATE_NAMES} for p in phases}
    totals = {p.id: [0, 0] for p in phases}
    overdue: dict[str, list[dict]] = {p.id: [] for p in phases}
    with store.uow() as uow:
        tree = load_units(uow, campaign_id)
        counts = own_counts(uow, plan, campaign_id, now, tree)
    for _i, unit, phase, state, required, present, _late in own_rows(plan, now, tree, counts):
        if phase.id not in wanted:
            continue
        states[phase.id][state] += 1
        totals[phase.id][0] += required
        totals[phase.id][1] += present
        if state == "overdue":
            overdue[phase.id].append({"unit": unit.code, "name": unit.name, "missing": required - present, "present": present, "required": required})
    result = []
    for phase in phases:
        units = sum(states[phase.id].values())
        if units == 0:
            continue
        required, present = totals[phase.id]
        percent = 100.0 if required == 0 else round(100.0 * present / required, 1)
        result.append(asdict(PhaseProgress(phase.id, phase.name, phase.deadline.isoformat(), units, states[phase.id], percent, overdue[phase.id])))
    return result


# --------------------------------------------------------------------------- what one tick did with notices
#
# A tick's phases plan at the same time and one email carries the notices of several phases,
# so what a tick did is read from the store, against marks taken as it began: ids only grow,
# so the notices and emails it added are those past the marks, and the emails it sent are
# among those not yet sent then (from the first of them on).


def last_tick_at(uow, campaign_id: str) -> dt.datetime | None:
    """The moment of the latest pass that planned a notice (its ``now``), if any."""
    return uow.session.scalar(select(func.max(Notice.planned_at)).where(Notice.campaign_id == campaign_id))


def tick_mark(store: Store, campaign_id: str) -> dict:
    """Where the campaign's notices and outbox stand as a tick begins (see ``tick_notices``)."""
    with store.uow() as uow:
        session = uow.session
        notice_id = session.scalar(select(func.max(Notice.id)).where(Notice.campaign_id == campaign_id)) or 0
        outbox_id = session.scalar(select(func.max(Outbox.id)).where(Outbox.campaign_id == campaign_id)) or 0
        first_unsent = session.scalar(
            select(func.min(Outbox.id)).where(Outbox.campaign_id == campaign_id, Outbox.status != "sent", Outbox.gave_up.is_(False))
        ) or outbox_id + 1
        return {"notice_id": notice_id, "outbox_id": outbox_id, "first_unsent": first_unsent, "sent": _sent_from(uow, campaign_id, first_unsent)}


def _sent_from(uow: UnitOfWork, campaign_id: str, first_outbox_id: int) -> dict[str, int]:
    """Per phase, notices carried by sent emails from outbox row ``first_outbox_id`` on."""
    rows = uow.session.execute(
        select(Notice.phase_id, func.count())
        .join(Outbox, Outbox.id == Notice.outbox_id)
        .where(Notice.campaign_id == campaign_id, Notice.outbox_id >= first_outbox_id, Outbox.status == "sent")
        .group_by(Notice.phase_id)
    )
    return {phase_id: n for phase_id, n in rows}


def tick_notices(store: Store, campaign_id: str, mark: dict) -> dict[str, dict[str, int]]:
    """Per phase, what a tick did since ``mark`` (``tick_mark``): the reminders and escalations
    it planned, the notices it put into emails (queued) and the notices carried by the emails it
    sent. Only phases with something to show."""
    out: dict[str, dict[str, int]] = {}

    def phase(phase_id: str) -> dict[str, int]:
        return out.setdefault(phase_id, {"reminders": 0, "escalations": 0, "queued": 0, "sent": 0})

    with store.uow() as uow:
        planned = uow.session.execute(
            select(Notice.phase_id, Notice.kind, func.count())
            .where(Notice.campaign_id == campaign_id, Notice.id > mark["notice_id"])
            .group_by(Notice.phase_id, Notice.kind)
        )
        for phase_id, kind, n in planned:
            phase(phase_id)["reminders" if kind == "reminder" else "escalations"] += n
        queued = uow.session.execute(
            select(Notice.phase_id, func.count())
            .where(Notice.campaign_id == campaign_id, Notice.outbox_id > mark["outbox_id"])
            .group_by(Notice.phase_id)
        )
        for phase_id, n in queued:
            phase(phase_id)["queued"] = n
        for phase_id, n in _sent_from(uow, campaign_id, mark["first_unsent"]).items():
            if n > mark["sent"].get(phase_id, 0):
                phase(phase_id)["sent"] = n - mark["sent"].get(phase_id, 0)
    return out


def notice_totals(store: Store, campaign_id: str) -> dict[str, dict[str, int]]:
    """Per phase, over the whole campaign so far: reminders and escalations planned, and the
    notices carried by emails sent. Cumulative, unlike ``tick_notices``."""
    with store.uow() as uow:
        rows = uow.session.execute(
            select(
                Notice.phase_id,
                func.sum(case((Notice.kind == "reminder", 1), else_=0)),
                func.sum(case((Notice.kind == "escalation", 1), else_=0)),
                func.sum(case((Outbox.status == "sent", 1), else_=0)),
            )
            .outerjoin(Outbox, Outbox.id == Notice.outbox_id)
            .where(Notice.campaign_id == campaign_id)
            .group_by(Notice.phase_id)
        )
        return {
            phase_id: {"reminders": int(r or 0), "escalations": int(e or 0), "sent": int(s or 0)}
            for phase_id, r, e, s in rows
        }


async def tick_once(
    store: Store, plan: Plan, campaign_id: str, now: dt.datetime,
    smtp: SmtpSettings | None = None, settings: ReminderSettings | None = None, before_send=None,
) -> dict:
    """The tick's steps in the tick flow's order, without Prefect (tests, benchmarks, one-off runs)."""
    settings = settings or reminder_settings()
    collected = collect_submissions(store, plan, campaign_id, now)
    results = take_results(store, plan, campaign_id, now)
    open_ids = phases_to_tick(store, plan, campaign_id, now)
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
