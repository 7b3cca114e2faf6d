"""When to remind and whom to escalate to. Pure: given a status and a plan, which notices are due now.

A reminder with offset k is due from the morning k working days before a deadline; at a
tick, only the most recent offset applies (a missed tick does not send a backlog). An
escalation starts once a deadline has passed (step 0: the parent unit's office and the
committee member the plan assigns to the unit), then climbs the plan's ladder, each step
after its delay in working days, each step once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kiemdiem.catalogue import addressee
from kiemdiem.plan import Phase, Plan
from kiemdiem.status import CampaignStatus, Item, UnitInfo
from kiemdiem.tabular import fold


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class PlannedNotice:
    recipient: Recipient
    kind: str  # reminder | escalation
    step: int
    item: Item
    reason: str


def current_reminder_offset(plan: Plan, phase: Phase, now: dt.datetime) -> int | None:
    """The offset whose reminder is due at ``now``: the smallest offset not after today, if any."""
    if now > phase.deadline:
        return None
    days_left = working_days_left(plan, phase, now)
    due = [k for k in plan.reminder_offsets if days_left <= k]
    return min(due) if due else None


def working_days_left(plan: Plan, phase: Phase, now: dt.datetime) -> int:
    """Working days really left at ``now`` (what a reminder says), whichever offset planned it:
    a reminder sent late, or on a tick after a missed one, has fewer left than its offset."""
    return plan.calendar.working_days_left(now, phase.deadline)


def overdue_working_days(plan: Plan, phase: Phase, now: dt.datetime) -> int:
    calendar = plan.calendar
    return max(0, calendar.working_days_between(calendar.local(phase.deadline).date(), calendar.local(now).date()))


def phase_is_open(plan: Plan, phase: Phase, now: dt.datetime) -> bool:
    """A phase needs ticks until its last escalation step is behind it."""
    last_step = max((s.after_working_days for s in plan.escalation), default=0)
    return overdue_working_days(plan, phase, now) <= last_step + 1


class RecipientDirectory:
    """Who answers for a unit: its own office, its ancestors' offices, and assigned committee members."""

    def __init__(self, plan: Plan, units: dict[str, UnitInfo], member_emails: dict[str, str]):
        self.plan = plan
        self.units = units
        by_name = {fold(u.name): code for code, u in units.items()}
        self.assigned: dict[str, list[Recipient]] = {}
        for a in plan.assignments:
            code = a.unit if a.unit in units else by_name.get(fold(a.unit))
            email = a.email or member_emails.get(fold(a.person))
            if code and email:
                # "Đồng chí Lê Xuân Tiến, Phó Bí thư Đảng ủy Sở": a person, by the plan's title for them.
                name = f"Đồng chí {a.person}" + (f", {a.title}" if a.title else "")
                self.assigned.setdefault(code, []).append(Recipient(email, name))
        self.root = next((code for code, u in units.items() if u.parent_code is None or u.parent_code not in units), None)

    def office(self, code: str | None) -> list[Recipient]:
        if code is None or code not in self.units:
            return []
        unit = self.units[code]
        return [Recipient(email, addressee(unit.name, unit.kind)) for email in unit.emails]

    def ancestor(self, code: str, levels: int) -> str | None:
        for _ in range(levels):
            parent = self.units[code].parent_code
            if parent is None or parent not in self.units:
                return None
            code = parent
        return code

    def escalation_targets(self, code: str, step: int) -> list[Recipient]:
        if step == 0:
            parent = self.ancestor(code, 1)
            # The root has no parent in the tree: its own office hears that it is overdue.
            return self.office(parent if parent else code) + self.assigned.get(code, [])
        spec = self.plan.escalation[step - 1]
        if spec.to == "parent":
            return self.office(self.ancestor(code, 1) or code)
        if spec.to == "grandparent":
            return self.office(self.ancestor(code, 2) or self.ancestor(code, 1) or code)
        if spec.to == "root":
            return self.office(self.root)
        return [Recipient(email, spec.name or email) for email in spec.emails]


def plan_notices(
    plan: Plan,
    status: CampaignStatus,
    directory: RecipientDirectory,
    now: dt.datetime,
    phase_ids: set[str] | None = None,
    kinds: frozenset[str] = frozenset({"reminder", "escalation"}),
) -> list[PlannedNotice]:
    """Every reminder and escalation notice due at ``now``; the store drops ones already planned."""
    phases = {p.id: p for p in plan.phases if phase_ids is None or p.id in phase_ids}
    offsets = {pid: current_reminder_offset(plan, p, now) for pid, p in phases.items()}
    overdue_days = {pid: overdue_working_days(plan, p, now) for pid, p in phases.items()}
    notices: list[PlannedNotice] = []
    for code, rows in status.by_unit.items():
        for row in rows:
            phase = phases.get(row.phase_id)
            if phase is None or not row.missing:
                continue
            if row.state != "overdue":
                if "reminder" not in kinds:
                    continue
                offset = offsets[phase.id]
                if offset is None:
                    continue
                reason = f"nhắc trước hạn {offset} ngày làm việc: {phase.id} còn thiếu {len(row.missing)} mục"
                for recipient in directory.office(code):
                    notices.extend(PlannedNotice(recipient, "reminder", offset, item, reason) for item in row.missing)
                continue
            if "escalation" not in kinds:
                continue
            late = overdue_days[phase.id]
            steps = [0] + [s.step for s in plan.escalation if late >= s.after_working_days]
            for step in steps:
                reason = f"quá hạn {late} ngày làm việc: {code} còn thiếu {len(row.missing)} mục ({phase.id}), chuyển cấp bước {step}"
                seen: set[str] = set()
                for recipient in directory.escalation_targets(code, step):
                    if recipient.email in seen:
                        continue
                    seen.add(recipient.email)
                    notices.extend(PlannedNotice(recipient, "escalation", step, item, reason) for item in row.missing)
    return notices
