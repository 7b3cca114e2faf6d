"""When to remind and whom to escalate to. Pure: given a status and a plan, which notices are due now.

A reminder with offset k is due from the morning k working days before a deadline; at a
tick, only the most recent offset applies (a missed tick does not send a backlog). An
escalation starts once a deadline has passed (step 0: the parent unit's office and the
committee member the plan assigns to the unit), then climbs the plan's ladder, each step
after its delay in working days, each step once.

A step tells only addresses no earlier step of the ladder told about the same unit and phase:
for a unit directly under the root, step 0 (its parent) and a step ``to: root`` reach the same
office with the same list, and the second adds nothing (``RecipientDirectory.ladder``). A step
whose destination the plan itself names again (187-KH/ĐU: ``to: root`` twice, the second "nhắc
lần cuối") is a call repeated on purpose and goes to all its addresses.

A member in temporary activity is classified by their official branch on a written comment of
the branch where they are temporarily active (KH-DUK-HT-2022, Mục A.2.2).
That comment is the official branch's item (``members: temporary``); ``comment_requests`` asks
the temporary branch's office for it, as one more reminder of the same item at the same offset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
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
        # The ladder in the order its steps come due (a plan need not list them in that order),
        # and which steps name a destination an earlier one named: step 0 is the parent's.
        self.order = [s.step for s in sorted(plan.escalation, key=lambda s: (s.after_working_days, s.step))]
        named = {("parent", ())}
        self.repeats: dict[int, bool] = {}
        for step in self.order:
            spec = plan.escalation[step - 1]
            destination = (spec.to, tuple(sorted(spec.emails)) if spec.to == "emails" else ())
            self.repeats[step] = destination in named
            named.add(destination)

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

    def due_steps(self, late: int) -> list[int]:
        """The steps due ``late`` working days after a deadline, in the order they come due."""
        return [0] + [step for step in self.order if late >= self.plan.escalation[step - 1].after_working_days]

    def ladder(self, code: str, steps: list[int]) -> list[tuple[int, list[Recipient]]]:
        """Whom each of ``steps`` (``due_steps``) tells about ``code``: its targets, each address
        once, less the addresses an earlier step told, unless the step repeats a destination on
        purpose. Only the tree and the plan decide, never what was sent: every tick plans the same
        notices for the same steps, so a tick run again or after a crash adds nothing."""
        told: set[str] = set()
        out = []
        for step in steps:
            repeat = self.repeats.get(step, False)
            seen: set[str] = set()
            chosen = []
            for recipient in self.escalation_targets(code, step):
                if recipient.email in seen or (recipient.email in told and not repeat):
                    continue
                seen.add(recipient.email)
                chosen.append(recipient)
            told |= seen
            if chosen:
                out.append((step, chosen))
        return out


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
            for step, recipients in directory.ladder(code, directory.due_steps(late)):
                reason = f"quá hạn {late} ngày làm việc: {code} còn thiếu {len(row.missing)} mục ({phase.id}), chuyển cấp bước {step}"
                for recipient in recipients:
                    notices.extend(PlannedNotice(recipient, "escalation", step, item, reason) for item in row.missing)
    return notices


def temporary_comment_docs(plan: Plan) -> dict[str, frozenset[str]]:
    """Per phase id, its per-member documents owed for members in temporary activity
    (``members: temporary``): the temporary branch's comment, which the official branch submits."""
    out = {}
    for phase in plan.phases:
        docs = frozenset(r.doc_type for r in phase.documents if r.per_member and r.member_scope == "temporary")
        if docs:
            out[phase.id] = docs
    return out


def asks_for_comment(docs: Mapping[str, frozenset[str]], phase_id: str, doc_type: str, member_code: str | None) -> bool:
    """Whether an item is a member's temporary-activity comment (``docs``: ``temporary_comment_docs``)."""
    return member_code is not None and doc_type in docs.get(phase_id, ())


def comment_members(plan: Plan, notices: Iterable[PlannedNotice]) -> set[str]:
    """Codes of the members whose temporary branch ``comment_requests`` may ask: those a reminder
    of ``notices`` is about a temporary-activity comment of."""
    docs = temporary_comment_docs(plan)
    if not docs:
        return set()
    return {
        n.item.member_code for n in notices
        if n.kind == "reminder" and asks_for_comment(docs, n.item.phase_id, n.item.doc_type, n.item.member_code)
    }


def comment_requests(
    plan: Plan, notices: Iterable[PlannedNotice], directory: RecipientDirectory, temporary_units: Mapping[str, str],
) -> list[PlannedNotice]:
    """The reminders of ``notices`` about a temporary-activity comment, repeated to the office of the
    member's temporary branch (``temporary_units``: member code -> that branch's code).

    The same item and offset as the official branch's reminder: planned on the same mornings, kept
    once per (recipient, item, offset) by the store, dropped once the official branch has delivered
    the item or its deadline has passed, exactly like the official branch's own. An address of the
    official branch's office is left out: it is reminded of the item already."""
    docs = temporary_comment_docs(plan)
    out: list[PlannedNotice] = []
    seen: set[tuple[str, int]] = set()
    for n in notices:
        item = n.item
        if n.kind != "reminder" or not asks_for_comment(docs, item.phase_id, item.doc_type, item.member_code):
            continue
        if (item.key, n.step) in seen:
            continue  # one reminder per address of the official branch's office: ask once
        seen.add((item.key, n.step))
        branch = temporary_units.get(item.member_code)
        if branch is None or branch == item.unit_code:
            continue
        owner = {r.email for r in directory.office(item.unit_code)}
        reason = (f"nhắc trước hạn {n.step} ngày làm việc: đề nghị {branch} nhận xét đảng viên {item.member_code}"
                  f" sinh hoạt tạm thời, gửi {item.unit_code}")
        out.extend(PlannedNotice(r, "reminder", n.step, item, reason) for r in directory.office(branch) if r.email not in owner)
    return out
