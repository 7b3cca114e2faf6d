"""Where every unit stands in every phase at a given moment. Pure: the clock is an argument.

An item is one document a unit owes in a phase (per unit) or one member's document
(per member). A unit's state in a phase follows from its required items:
done (all in, on time), done_late (all in, some late), overdue (missing after the
deadline), due_soon (missing, deadline within a few working days), pending.
Timeliness is judged on an item's first delivery; a later correction does not make it late.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from kiemdiem.catalogue import LEADER_POSITIONS, REVIEWED_STATUSES
from kiemdiem.plan import DocumentRequirement, Phase, Plan
from kiemdiem.submission import item_key

STATES = ("done", "done_late", "pending", "due_soon", "overdue")
STATE_NAMES = {
    "done": "Hoàn thành",
    "done_late": "Hoàn thành (trễ hạn)",
    "pending": "Chưa đến hạn",
    "due_soon": "Sắp đến hạn",
    "overdue": "Quá hạn",
}


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: int
    code: str
    name: str
    kind: str
    parent_code: str | None
    emails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: int
    code: str
    full_name: str
    unit_code: str
    status: str
    temporary_unit_code: str | None
    positions: tuple[str, ...]
    joined_on: dt.date | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """An item's delivery history at ``now``: when it first arrived and whether that was on time."""

    first_received_at: dt.datetime
    first_on_time: bool
    last_received_at: dt.datetime
    versions: int


@dataclass(frozen=True, slots=True)
class Item:
    unit_code: str
    phase_id: str
    doc_type: str
    member_code: str | None
    member_name: str | None
    required: bool

    @property
    def key(self) -> str:
        return item_key(self.unit_code, self.phase_id, self.doc_type, self.member_code)


@dataclass
class UnitPhaseStatus:
    unit_code: str
    phase_id: str
    deadline: dt.datetime
    state: str
    required: int
    present: int
    late: int
    missing: list[Item] = field(default_factory=list)
    optional_missing: list[Item] = field(default_factory=list)
    subtree_required: int = 0
    subtree_present: int = 0

    @property
    def percent(self) -> float:
        return 100.0 if self.required == 0 else round(100.0 * self.present / self.required, 1)

    @property
    def subtree_percent(self) -> float:
        return 100.0 if self.subtree_required == 0 else round(100.0 * self.subtree_present / self.subtree_required, 1)


@dataclass
class CampaignStatus:
    now: dt.datetime
    units: dict[str, UnitInfo]
    by_unit: dict[str, list[UnitPhaseStatus]]
    # (required, present) over each unit's subtree, per phase id and '*' for all phases
    subtree: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)

    def subtree_percent(self, code: str, phase_id: str = "*") -> float | None:
        required, present = self.subtree.get(code, {}).get(phase_id, (0, 0))
        return None if required == 0 else round(100.0 * present / required, 1)

    def for_unit(self, code: str) -> list[UnitPhaseStatus]:
        return self.by_unit.get(code, [])

    def count_states(self) -> dict[str, int]:
        counts = {s: 0 for s in STATES}
        for rows in self.by_unit.values():
            for row in rows:
                counts[row.state] += 1
        return counts


def member_owes(member: MemberInfo, requirement: DocumentRequirement) -> bool:
    scope = requirement.member_scope
    if scope == "all":
        return True
    if member.status not in REVIEWED_STATUSES:
        return False  # exempt and suspended members are not reviewed
    if scope == "temporary":
        return member.temporary_unit_code is not None
    if scope == "leaders":
        return bool(LEADER_POSITIONS.intersection(member.positions))
    return True


def owed_items(phase: Phase, unit: UnitInfo, members: list[MemberInfo]) -> list[Item]:
    items: list[Item] = []
    for req in phase.documents:
        if not req.per_member:
            items.append(Item(unit.code, phase.id, req.doc_type, None, None, req.required))
            continue
        for member in members:
            if member_owes(member, req):
                items.append(Item(unit.code, phase.id, req.doc_type, member.code, member.full_name, req.required))
    return items


def unit_phase_state(
    plan: Plan,
    phase: Phase,
    items: list[Item],
    deliveries: dict[str, Delivery],
    now: dt.datetime,
    due_soon_working_days: int,
) -> tuple[str, int, int, int, list[Item], list[Item]]:
    required = present = late = 0
    missing: list[Item] = []
    optional_missing: list[Item] = []
    for item in items:
        delivery = deliveries.get(item.key)
        if not item.required:
            if delivery is None:
                optional_missing.append(item)
            continue
        required += 1
        if delivery is None:
            missing.append(item)
        else:
            present += 1
            if not delivery.first_on_time:
                late += 1
    if not missing:
        state = "done_late" if late else "done"
    elif now > phase.deadline:
        state = "overdue"
    else:
        calendar = plan.calendar
        days_left = calendar.working_days_between(calendar.local(now).date(), calendar.local(phase.deadline).date())
        state = "due_soon" if days_left <= due_soon_working_days else "pending"
    return state, required, present, late, missing, optional_missing


def compute_status(
    plan: Plan,
    units: list[UnitInfo],
    members: list[MemberInfo],
    deliveries: dict[str, Delivery],
    now: dt.datetime,
    *,
    due_soon_working_days: int = 3,
    phase_ids: set[str] | None = None,
) -> CampaignStatus:
    """Status of every unit in every phase that applies to it, with completion rolled up over subtrees."""
    members_by_unit: dict[str, list[MemberInfo]] = defaultdict(list)
    for member in members:
        members_by_unit[member.unit_code].append(member)
    by_code = {u.code: u for u in units}
    by_unit: dict[str, list[UnitPhaseStatus]] = {}
    for unit in units:
        rows = []
        for phase in plan.phases_for_kind(unit.kind):
            if phase_ids is not None and phase.id not in phase_ids:
                continue
            items = owed_items(phase, unit, members_by_unit.get(unit.code, []))
            state, required, present, late, missing, optional_missing = unit_phase_state(
                plan, phase, items, deliveries, now, due_soon_working_days
            )
            rows.append(UnitPhaseStatus(unit.code, phase.id, phase.deadline, state, required, present, late, missing, optional_missing, required, present))
        by_unit[unit.code] = rows
    subtree = _roll_up(units, by_code, by_unit)
    return CampaignStatus(now=now, units=by_code, by_unit=by_unit, subtree=subtree)


def _roll_up(
    units: list[UnitInfo], by_code: dict[str, UnitInfo], by_unit: dict[str, list[UnitPhaseStatus]]
) -> dict[str, dict[str, tuple[int, int]]]:
    """Add each unit's own item counts to every ancestor's subtree counts, per phase and overall."""
    totals: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for unit in units:
        for row in by_unit[unit.code]:
            code: str | None = unit.code
            while code is not None:
                counts = totals[code]
                for key in (row.phase_id, "*"):
                    counts[key][0] += row.required
                    counts[key][1] += row.present
                code = by_code[code].parent_code if code in by_code else None
    for unit in units:
        for row in by_unit[unit.code]:
            row.subtree_required, row.subtree_present = totals[unit.code][row.phase_id]
    return {code: {k: (v[0], v[1]) for k, v in counts.items()} for code, counts in totals.items()}
