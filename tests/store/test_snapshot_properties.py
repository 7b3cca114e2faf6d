"""Properties of consolidation at the store level (hypothesis), on SQLite and PostgreSQL.

For small random trees, members and results, and random rounds of changes (new results from a
branch or a committee, cancellations, overrides), under each rule set, after every incremental run:

- the newest stored snapshot of every unit equals a full recompute from the store;
- it also equals the pure consolidation of the results the test itself knows to be current
  (so loading from the store loses nothing and picks the right row);
- a second run, full or incremental, makes no new version;
- versions of a unit are 1..n without gaps.

Each example uses a fresh campaign in the same database, so examples never see each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kiemdiem.consolidation import (
    ConsolidationInput,
    MemberRecord,
    MemberResult,
    OrgResult,
    Override,
    UnitNode,
    consolidate,
    unit_hash,
)
from kiemdiem.rules.base import LEVELS
from kiemdiem.store.models import Snapshot, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.results import cancel_result, current_finding_keys, override_finding, record_results
from kiemdiem.store import snapshots
from kiemdiem.store.snapshots import consolidate_campaign, latest_hashes, latest_snapshots, load_consolidation_input
from tests.support import ict

PROFILE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_campaigns = itertools.count(1)
START = ict(2023, 12, 1, 9)
MAYBE_LEVEL = st.sampled_from([None, *LEVELS])
FINAL = st.sampled_from([None, "HTXSNV", "HTXSNV", "HTTNV", "HTTNV", "HTTNV", "HTNV", "KHTNV"])
SCORE = st.sampled_from([None, 30.0, 50.0, 69.5, 75.0, 90.0, 96.0])  # 366/43 bands: 90, 70, 50


@st.composite
def organizations(draw):
    """(units, members): a root, base organizations, intermediate đảng bộ, branches with 0–4 members."""
    units: list[UnitNode] = []
    members: list[MemberRecord] = []
    root_kind = draw(st.sampled_from(["cap_tren_co_so", "dang_bo_co_so"]))
    units.append(UnitNode("R", "Đảng bộ R", root_kind, None))

    def branch(code: str, kind: str, parent: str) -> None:
        units.append(UnitNode(code, f"Chi bộ {code}", kind, parent))
        for i in range(draw(st.integers(0, 4))):
            members.append(MemberRecord(
                f"{code}M{i}", f"Đảng viên {code} {i}", code,
                draw(st.sampled_from(["active", "active", "active", "probationary", "exempt", "suspended"])),
                draw(st.sampled_from([None, dt.date(2001, 1, 1), dt.date(2023, 9, 1)])),
                ("bi_thu",) if i == 0 and draw(st.booleans()) else (),
            ))

    def base_body(code: str) -> None:
        for j in range(draw(st.integers(1, 3))):
            if draw(st.integers(0, 3)) == 0:
                inner = f"{code}P{j}"
                units.append(UnitNode(inner, f"Đảng bộ bộ phận {inner}", "dang_bo_bo_phan", code))
                for k in range(draw(st.integers(1, 2))):
                    branch(f"{inner}B{k}", "chi_bo_truc_thuoc", inner)
            else:
                branch(f"{code}B{j}", "chi_bo_truc_thuoc", code)

    if root_kind == "dang_bo_co_so":
        base_body("R")
    else:
        for i in range(draw(st.integers(1, 3))):
            if draw(st.booleans()):
                code = f"R{i}"
                units.append(UnitNode(code, f"Đảng bộ {code}", "dang_bo_co_so", "R"))
                base_body(code)
            else:
                branch(f"R{i}", "chi_bo_co_so", "R")
    return units, members


def _ancestors(units: list[UnitNode], code: str) -> list[str]:
    parent = {u.code: u.parent_code for u in units}
    out, current = [], parent.get(code)
    while current is not None:
        out.append(current)
        current = parent.get(current)
    return out


@st.composite
def member_result(draw, units, member: MemberRecord):
    submitter = draw(st.sampled_from([member.unit_code, *_ancestors(units, member.unit_code)]))
    return MemberResult(
        member.member_id, submitter, draw(MAYBE_LEVEL), draw(MAYBE_LEVEL), draw(FINAL), draw(st.integers(0, 9)) == 0,
        draw(st.sampled_from([0.0, 4.0])), draw(st.integers(0, 9)) == 0, draw(SCORE), "", draw(st.integers(0, 5)) > 0,
    )


@st.composite
def org_result(draw, units, code: str):
    deciders = _ancestors(units, code)
    decided_by = draw(st.sampled_from([None, *deciders])) if deciders else None
    return OrgResult(code, draw(FINAL), decided_by, draw(st.integers(0, 12)) == 0, draw(MAYBE_LEVEL))


@st.composite
def results(draw, units, members):
    chosen = draw(st.lists(st.sampled_from(members), unique_by=lambda m: m.member_id)) if members else []
    orgs = [u.code for u in units if u.parent_code is not None]
    chosen_orgs = draw(st.lists(st.sampled_from(orgs), unique=True)) if orgs else []
    return (
        [draw(member_result(units, m)) for m in chosen],
        [draw(org_result(units, c)) for c in chosen_orgs],
    )


@st.composite
def scenarios(draw):
    rule_set = draw(st.sampled_from(["124/25", "132/21", "366/43"]))
    units, members = draw(organizations())
    initial = draw(results(units, members))
    rounds = []
    for _ in range(draw(st.integers(1, 3))):
        new_members, new_orgs = draw(results(units, members))
        rounds.append({
            "members": new_members[: draw(st.integers(0, 3))],
            "orgs": new_orgs[: draw(st.integers(0, 2))],
            "cancel_members": draw(st.lists(st.sampled_from([m.member_id for m in members]), max_size=2, unique=True)) if members else [],
            "cancel_orgs": draw(st.lists(st.sampled_from([u.code for u in units]), max_size=1, unique=True)),
            "override": draw(st.integers(0, 2)) == 0,
            "lose_change_set": draw(st.integers(0, 3)) == 0,  # the tick crashed: changes come from the log
        })
    return rule_set, units, members, initial, rounds


def _csv(header: str, rows: list[list[str]]) -> bytes:
    return (header + "\n" + "".join(",".join(r) + "\n" for r in rows)).encode()


def _import(store, plan, campaign_id: str, units, members) -> None:
    units_csv = _csv("code,name,kind,parent,emails", [
        [u.code, u.name, u.kind, u.parent_code or "", f"{u.code.lower()}@example.vn"] for u in units
    ])
    members_csv = _csv("member_id,full_name,unit,email,joined_on,status,temporary_unit,positions", [
        [m.member_id, m.full_name, m.unit_code, "", m.joined_on.isoformat() if m.joined_on else "", m.status, "", ";".join(m.positions)]
        for m in members
    ])
    with store.uow() as uow:
        create_campaign(uow, plan, campaign_id, START)
        import_organization(uow, campaign_id, Path("units.csv"), Path("members.csv"), START, units_data=units_csv, members_data=members_csv)
        uow.commit()


def _check(store, plan, campaign_id: str, now: dt.datetime, expected: ConsolidationInput) -> None:
    with store.uow() as uow:
        stored = latest_hashes(uow, campaign_id)
        full = {code: unit_hash(s) for code, s in consolidate(load_consolidation_input(uow, plan, campaign_id, now)).items()}
        gaps = uow.session.execute(
            select(Unit.code, func.count(), func.max(Snapshot.version))
            .join(Unit, Unit.id == Snapshot.unit_id)
            .where(Snapshot.campaign_id == campaign_id)
            .group_by(Unit.code)
        ).all()
    assert stored == full
    assert stored == {code: unit_hash(s) for code, s in consolidate(expected).items()}
    assert all(count == newest for _, count, newest in gaps)


def _expected(units, members, plan, current_members: dict, current_orgs: dict, overrides: list[Override]) -> ConsolidationInput:
    return ConsolidationInput(
        tuple(units), tuple(members), tuple(current_members.values()), tuple(current_orgs.values()),
        plan.rule_set, plan.evaluation_date, tuple(overrides),
    )


@PROFILE
@given(scenario=scenarios())
def test_incremental_runs_equal_a_full_recompute_in_the_store(store, plan_187, scenario):
    rule_set, units, members, (initial_members, initial_orgs), rounds = scenario
    plan_187 = dataclasses.replace(plan_187, rule_set=rule_set)
    campaign_id = f"prop{next(_campaigns)}"
    _import(store, plan_187, campaign_id, units, members)
    current_members = {r.member_id: r for r in initial_members}
    current_orgs = {r.unit_code: r for r in initial_orgs}
    overrides: list[Override] = []
    with store.uow() as uow:
        record_results(uow, plan_187, campaign_id, START, initial_members, initial_orgs)
        uow.commit()
    first = consolidate_campaign(store, plan_187, campaign_id, START, changed_units=set())
    assert first.mode == "full"
    _check(store, plan_187, campaign_id, START, _expected(units, members, plan_187, current_members, current_orgs, overrides))

    for number, change in enumerate(rounds, start=1):
        now = START + dt.timedelta(days=number)
        changed: set[str] = set()
        with store.uow() as uow:
            changed |= record_results(uow, plan_187, campaign_id, now, change["members"], change["orgs"])
            uow.commit()
        # A committee's decision stands against a later list from a unit below it (store.results).
        parent = {u.code: u.parent_code for u in units}
        for r in change["members"]:
            if not _decided_above(parent, current_members.get(r.member_id, None) and current_members[r.member_id].unit_code, r.unit_code):
                current_members[r.member_id] = r
        for r in change["orgs"]:
            held = current_orgs.get(r.unit_code)
            if not _decided_above(parent, held and (held.decided_by or held.unit_code), r.decided_by or r.unit_code):
                current_orgs[r.unit_code] = r
        for member_id in change["cancel_members"]:
            if member_id in current_members:
                with store.uow() as uow:
                    changed.add(cancel_result(uow, campaign_id, member_code=member_id, by="A", reason="hủy", now=now).changed_unit)
                    uow.commit()
                del current_members[member_id]
        for code in change["cancel_orgs"]:
            if code in current_orgs:
                with store.uow() as uow:
                    changed.add(cancel_result(uow, campaign_id, unit_code=code, by="A", reason="hủy", now=now).changed_unit)
                    uow.commit()
                del current_orgs[code]
        if change["override"]:
            with store.uow() as uow:
                keys = sorted(k for uid in uow.session.scalars(select(Unit.id).where(Unit.campaign_id == campaign_id))
                              for k in current_finding_keys(uow, campaign_id, uid))
                taken = {o.finding_key for o in overrides}
                free = [k for k in keys if k not in taken]
                if free:
                    row = override_finding(uow, campaign_id, free[0], "Bí thư", "chấp thuận", now)
                    uow.commit()
                    overrides.append(Override(row.finding_key, row.by, row.reason, row.at.astimezone(dt.timezone.utc), row.covers))
        run = consolidate_campaign(store, plan_187, campaign_id, now, changed_units=set() if change["lose_change_set"] else changed)
        assert run.mode in ("incremental", "unchanged"), run
        _check_counting_ways(store, plan_187, campaign_id, now)
        _check(store, plan_187, campaign_id, now, _expected(units, members, plan_187, current_members, current_orgs, overrides))
        # The same inputs again: nothing new, whichever way it is run.
        with store.uow() as uow:
            before = {c: s["version"] for c, s in latest_snapshots(uow, campaign_id).items()}
        assert consolidate_campaign(store, plan_187, campaign_id, now, changed_units=None).units_updated == []
        assert consolidate_campaign(store, plan_187, campaign_id, now, changed_units=changed).units_updated == []
        with store.uow() as uow:
            assert {c: s["version"] for c, s in latest_snapshots(uow, campaign_id).items()} == before


def _decided_above(parent: dict, decider: str | None, submitter: str) -> bool:
    code = parent.get(submitter)
    while code is not None and decider is not None:
        if code == decider:
            return True
        code = parent.get(code)
    return False


def _check_counting_ways(store, plan, campaign_id: str, now: dt.datetime) -> None:
    """Members counted by the ``current`` flags (GROUP BY in SQL) and from each one's newest row
    agree: tallies, members listed as missing, members examined."""
    with store.uow() as uow:
        code_of = {u.id: u.code for u in snapshots._units(uow, campaign_id)}
        assert snapshots._current_flags_hold(uow, campaign_id, now)
        if snapshots._own_tallies(uow, plan, campaign_id, now, code_of) is None:
            return  # a rule set read from full records
        by_flags = snapshots._own_tallies(uow, plan, campaign_id, now, code_of, by_flags=True)
        by_rows = snapshots._own_tallies(uow, plan, campaign_id, now, code_of, by_flags=False)
        assert by_flags[0] == by_rows[0]
        assert sorted(m.member_id for m in by_flags[1]) == sorted(m.member_id for m in by_rows[1])
        assert sorted(r.member_id for r in by_flags[2]) == sorted(r.member_id for r in by_rows[2])


# Each member rule reports one member whom no other condition would have the store read in full
# (active, long a member, no position, self-review done, levels and score matching): a full run
# from member lines must still find every one of them.
RULE_TRIGGERS = {
    "invalid_level": dict(self_level="XYZ"),
    "not_evaluated_classified": dict(status="exempt"),
    "disciplined_member": dict(disciplined=True),
    "no_self_review": dict(review=False),
    "head_above_unit": dict(positions=("bi_thu",), proposed="HTXSNV", final="HTXSNV", score=95.0),
    "absent_pending": dict(absent=True, final=None),
    "sick_leave_ceiling": dict(sick=4.0),
    "score_missing": dict(score=None),
    "score_band": dict(score=55.0),
}
RULES_OF = {
    "124/25": ["invalid_level", "not_evaluated_classified", "disciplined_member", "no_self_review", "head_above_unit", "absent_pending"],
    "132/21": ["invalid_level", "not_evaluated_classified", "disciplined_member", "no_self_review", "head_above_unit", "absent_pending",
               "sick_leave_ceiling"],
    "366/43": ["invalid_level", "not_evaluated_classified", "disciplined_member", "no_self_review", "head_above_unit", "absent_pending",
               "score_missing", "score_band"],
}


@pytest.mark.parametrize("rule_set", sorted(RULES_OF))
def test_full_run_from_member_lines_reads_every_member_a_rule_reports(store, plan_187, rule_set):
    plan = dataclasses.replace(plan_187, rule_set=rule_set)
    campaign_id = f"rules{next(_campaigns)}"
    units = [UnitNode("R", "Đảng bộ R", "dang_bo_co_so", None), UnitNode("B", "Chi bộ B", "chi_bo_truc_thuoc", "R")]
    members, results = [], []
    for i in range(4):  # members nothing reports
        members.append(MemberRecord(f"OK{i}", f"Đảng viên {i}", "B", "active", dt.date(2001, 1, 1), ()))
        results.append(MemberResult(f"OK{i}", "B", "HTTNV", "HTTNV", "HTTNV", False, 0.0, False, 75.0, "", True))
    for rule in RULES_OF[rule_set]:
        t = RULE_TRIGGERS[rule]
        members.append(MemberRecord(f"M-{rule}", f"Đảng viên {rule}", "B", t.get("status", "active"), dt.date(2001, 1, 1), t.get("positions", ())))
        results.append(MemberResult(
            f"M-{rule}", "B", t.get("self_level", "HTTNV"), t.get("proposed", "HTTNV"), t.get("final", "HTTNV"),
            t.get("disciplined", False), t.get("sick", 0.0),
            t.get("absent", False), t.get("score", 75.0), "", t.get("review", True),
        ))
    _import(store, plan, campaign_id, units, members)
    with store.uow() as uow:
        record_results(uow, plan, campaign_id, START, results, [OrgResult("B", "HTTNV", "R", False, "HTTNV")])
        uow.commit()
    consolidate_campaign(store, plan, campaign_id, START, changed_units=set())
    with store.uow() as uow:
        root = latest_snapshots(uow, campaign_id, ["R"])["R"]["payload"]
    reported = {f["member_id"]: f["rule"] for f in root["findings"] if f["member_id"]}
    assert reported == {f"M-{rule}": rule for rule in RULES_OF[rule_set]}
    _check(store, plan, campaign_id, START, _expected(units, members, plan, {r.member_id: r for r in results},
                                                        {"B": OrgResult("B", "HTTNV", "R", False, "HTTNV")}, []))
