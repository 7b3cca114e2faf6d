"""A deterministic campaign scenario: which unit delivers what, when, and through which channel.

Used by the demo and by tests that run a whole campaign in minutes. Each unit gets a
behaviour per phase (on time, late, partly never, never); some units use the drop folder,
others the web portal; one unit re-submits a corrected file. Pure: no clock, no database.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, replace

from kiemdiem.consolidation import MemberRecord, UnitNode
from kiemdiem.plan import Plan
from kiemdiem.status import MemberInfo, UnitInfo, owed_items
from kiemdiem.synth_results import MEMBER_HEADERS, ORG_HEADERS, generate_results, member_rows, org_rows, table_bytes

BEHAVIOURS = ("on_time", "late", "partial", "never")
WEIGHTS = (0.55, 0.25, 0.12, 0.08)


@dataclass(frozen=True, slots=True)
class SimEvent:
    at: dt.datetime
    unit_code: str
    phase_id: str
    doc_type: str
    member_code: str | None
    channel: str  # web | drop
    filename: str
    content: bytes
    note: str = ""


def _working_morning(plan: Plan, day: dt.date, rng: random.Random) -> dt.datetime:
    calendar = plan.calendar
    while not calendar.is_working_day(day):
        day += dt.timedelta(days=1)
    return calendar.at(day, dt.time(8 + rng.randrange(0, 8), rng.randrange(0, 60)))


def behaviours(plan: Plan, units: list[UnitInfo], seed: int) -> dict[tuple[str, str], str]:
    rng = random.Random(seed)
    result = {}
    for unit in sorted(units, key=lambda u: u.code):
        for phase in plan.phases_for_kind(unit.kind):
            result[(unit.code, phase.id)] = rng.choices(BEHAVIOURS, WEIGHTS)[0]
    return result


def build_scenario(plan: Plan, units: list[UnitInfo], members: list[MemberInfo], seed: int) -> list[SimEvent]:
    rng = random.Random(seed)
    chosen = behaviours(plan, units, seed)
    by_unit: dict[str, list[MemberInfo]] = {}
    for member in members:
        by_unit.setdefault(member.unit_code, []).append(member)
    events: list[SimEvent] = []
    calendar = plan.calendar
    drop_units = {u.code for u in units if rng.random() < 0.4}
    for unit in sorted(units, key=lambda u: u.code):
        for phase in plan.phases_for_kind(unit.kind):
            behaviour = chosen[(unit.code, phase.id)]
            if behaviour == "never":
                continue
            items = [i for i in owed_items(phase, unit, by_unit.get(unit.code, [])) if i.required]
            if behaviour == "partial":
                items = [i for i in items if rng.random() < 0.7]
            deadline_day = calendar.local(phase.deadline).date()
            for item in items:
                if behaviour == "late":
                    day = calendar.add_working_days(deadline_day, rng.randint(1, 3))
                else:
                    day = calendar.add_working_days(deadline_day, -rng.randint(1, 4))
                at = _working_morning(plan, day, rng)
                stem = item.doc_type + (f"_{item.member_code}" if item.member_code else "")
                content = f"%PDF-1.4\n% {plan.number} {unit.code} {phase.id} {stem} seed={seed}\n".encode()
                channel = "drop" if unit.code in drop_units else "web"
                events.append(SimEvent(at, unit.code, phase.id, item.doc_type, item.member_code, channel, f"{stem}.pdf", content))
    # One unit corrects a file it already sent: a re-submission that supersedes, history kept.
    sent = sorted((e for e in events if e.member_code is None), key=lambda e: (e.at, e.unit_code, e.doc_type))
    if sent:
        first = sent[len(sent) // 2]
        events.append(
            SimEvent(
                first.at + dt.timedelta(days=1), first.unit_code, first.phase_id, first.doc_type, None, "web",
                first.filename.replace(".pdf", "_sua.pdf"), first.content + b"% ban sua\n", "nộp lại bản đã sửa",
            )
        )
    events.sort(key=lambda e: (e.at, e.unit_code, e.phase_id, e.doc_type, e.member_code or ""))
    return events


def demo_ticks(plan: Plan, start: dt.date, end: dt.date) -> list[dt.datetime]:
    """The times that matter: every morning (weekends and holidays show quiet hours), and an
    evening tick on each deadline day, whose mail waits for the next working morning."""
    calendar = plan.calendar
    deadline_days = {calendar.local(p.deadline).date() for p in plan.phases}
    ticks = []
    day = start
    while day <= end:
        ticks.append(calendar.at(day, dt.time(8, 0)))
        if day in deadline_days:
            ticks.append(calendar.at(day, dt.time(18, 30)))
        day += dt.timedelta(days=1)
    return ticks


def with_results(
    plan: Plan,
    events: list[SimEvent],
    units: list[UnitInfo],
    members: list[MemberInfo],
    seed: int,
) -> tuple[list[SimEvent], SimEvent | None]:
    """Give every submitted classification list real rows (the members' lists, a branch's own
    result), with one member absent from their branch's meeting; that member's result follows as
    a supplement after the committee's deadline. Every list must read: one that does not is
    refused when submitted."""
    nodes = [UnitNode(u.code, u.name, u.kind, u.parent_code) for u in units]
    records = [MemberRecord(m.code, m.full_name, m.unit_code, m.status, m.joined_on, m.positions) for m in members]
    generated = generate_results(nodes, records, seed, plan.evaluation_date, rule_set=plan.rule_set)
    names = {m.code: m.full_name for m in members}
    absent_id: str | None = None
    out: list[SimEvent] = []
    supplement: SimEvent | None = None
    unit_names = {u.code: u.name for u in units}
    org_of = {r.unit_code: r for r in generated.org_results}
    for event in events:
        if event.doc_type == "ket_qua_xep_loai_chi_bo":  # the branch's own self-assessment
            own = org_of.get(event.unit_code)
            rows = [replace(own, level=None, decided_by=None)] if own is not None else []
            out.append(replace(event, filename="ket_qua_xep_loai_chi_bo.csv", content=table_bytes(ORG_HEADERS, org_rows(rows, unit_names), ".csv")))
            continue
        if event.doc_type != "tong_hop_xep_loai_dang_vien":
            out.append(event)
            continue
        rows = [r for r in generated.member_results if any(m.code == r.member_id and m.unit_code == event.unit_code for m in members)]
        if absent_id is None and len(rows) > 2:
            missing = rows[1]
            absent_id = missing.member_id
            rows[1] = replace(missing, self_level=None, proposed_level=None, final_level=None, absent=True, note="vắng mặt, đánh giá bổ sung")
            later = max(p.deadline for p in plan.phases if p.kind in ("committee_review", "report_upward"))
            day = plan.calendar.add_working_days(plan.calendar.local(later).date(), 1)
            supplement = SimEvent(
                plan.calendar.at(day, dt.time(9, 30)), event.unit_code, event.phase_id, event.doc_type, None, "web",
                "bo_sung_ket_qua.csv", table_bytes(MEMBER_HEADERS, member_rows([missing], names), ".csv"),
                "bổ sung kết quả của đảng viên vắng mặt",
            )
        content = table_bytes(MEMBER_HEADERS, member_rows(rows, names), ".csv")
        out.append(replace(event, filename="tong_hop_xep_loai.csv", content=content))
    if supplement is not None:
        out.append(supplement)
        out.sort(key=lambda e: (e.at, e.unit_code, e.phase_id, e.doc_type, e.member_code or ""))
    return out, supplement
