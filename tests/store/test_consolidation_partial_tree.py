"""Incremental consolidation reads only the part of the tree it rebuilds (SQLite and PostgreSQL).

A late branch's run loads the branch, its ancestors, their children and the organizations their
committees decided, by code, path, id and parent: never the whole unit list. These tests check
that it still equals a full recompute, that it reads no more than that, and that whatever could
have changed the tree behind its back (a unit written without an import, an import that counts
only later) still sends it down the whole-tree path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

from sqlalchemy import select

from kiemdiem.consolidation import MemberRecord, MemberResult, OrgResult, UnitNode, consolidate, unit_hash
from kiemdiem.store.models import Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.results import record_results
from kiemdiem.store.snapshots import consolidate_campaign, latest_hashes, latest_snapshots, load_consolidation_input
from tests.support import ict

START = ict(2023, 12, 1, 9)
_campaigns = itertools.count(1)


def _tree() -> tuple[list[UnitNode], list[MemberRecord]]:
    """R > D1..D3 (đảng bộ cơ sở) > D?-B1..B3 (chi bộ trực thuộc), two members each: 13 units."""
    units = [UnitNode("R", "Đảng bộ R", "cap_tren_co_so", None)]
    members = []
    for d in range(1, 4):
        district = f"D{d}"
        units.append(UnitNode(district, f"Đảng bộ {district}", "dang_bo_co_so", "R"))
        for b in range(1, 4):
            branch = f"{district}-B{b}"
            units.append(UnitNode(branch, f"Chi bộ {branch}", "chi_bo_truc_thuoc", district))
            for m in range(1, 3):
                members.append(MemberRecord(f"{branch}-M{m}", f"Đảng viên {branch} {m}", branch, "active", dt.date(2000, 1, 1), ()))
    return units, members


def _csv(header: str, rows: list[list[str]]) -> bytes:
    return (header + "\n" + "\n".join(",".join(r) for r in rows) + "\n").encode()


def _import(store, plan, campaign_id: str, units, members, at=START, *, create=True) -> None:
    units_csv = _csv("code,name,kind,parent,emails", [
        [u.code, u.name, u.kind, u.parent_code or "", f"{u.code.lower()}@example.vn"] for u in units
    ])
    members_csv = _csv("member_id,full_name,unit,email,joined_on,status,temporary_unit,positions", [
        [m.member_id, m.full_name, m.unit_code, "", m.joined_on.isoformat(), m.status, "", ""] for m in members
    ])
    with store.uow() as uow:
        if create:
            create_campaign(uow, plan, campaign_id, START)
        import_organization(uow, campaign_id, Path("units.csv"), Path("members.csv"), at, units_data=units_csv, members_data=members_csv)
        uow.commit()


def _result(member_id: str, unit_code: str, level: str | None) -> MemberResult:
    return MemberResult(member_id, unit_code, level, level, level, False, 0.0, False, None, "", True)


def _record(store, plan, campaign_id, at, members=(), orgs=()) -> set[str]:
    with store.uow() as uow:
        changed = record_results(uow, plan, campaign_id, at, members, orgs)
        uow.commit()
    return changed


def _full_recompute(store, plan, campaign_id, now) -> dict[str, str]:
    with store.uow() as uow:
        return {code: unit_hash(s) for code, s in consolidate(load_consolidation_input(uow, plan, campaign_id, now)).items()}


def _stored(store, campaign_id) -> dict[str, str]:
    with store.uow() as uow:
        return latest_hashes(uow, campaign_id)


def _campaign(store, plan, *, late: str = "D2-B3"):
    """Every branch delivered but ``late``; organizations decided by the unit above; consolidated once."""
    units, members = _tree()
    campaign_id = f"part{next(_campaigns)}"
    _import(store, plan, campaign_id, units, members)
    on_time = [_result(m.member_id, m.unit_code, "HTTNV") for m in members if m.unit_code != late]
    orgs = [OrgResult(u.code, "HTTNV", u.parent_code, False) for u in units if u.parent_code is not None]
    _record(store, plan, campaign_id, START, on_time, orgs)
    first = consolidate_campaign(store, plan, campaign_id, START, changed_units=set())
    assert first.mode == "full" and first.units_read == len(units) == 13
    return campaign_id, units, members


def test_a_late_branch_reads_its_path_and_their_children_only_and_equals_a_full_recompute(store, plan_187):
    campaign_id, units, members = _campaign(store, plan_187)
    late_at = START + dt.timedelta(days=1)
    changed = _record(store, plan_187, campaign_id, late_at,
                      [_result(m.member_id, "D2-B3", "HTXSNV") for m in members if m.unit_code == "D2-B3"])
    run = consolidate_campaign(store, plan_187, campaign_id, late_at, changed_units=changed)

    assert run.mode == "incremental" and run.versions == {"D2-B3": 2, "D2": 2, "R": 2}
    # D2-B3, D2, R, and the children of D2 and R: D2-B1, D2-B2, D1, D3 (the other branches never).
    assert run.units_read == 7
    assert _stored(store, campaign_id) == _full_recompute(store, plan_187, campaign_id, late_at)
    with store.uow() as uow:
        r = latest_snapshots(uow, campaign_id, ["R"])["R"]["payload"]
    assert r["members"]["levels"]["HTXSNV"]["count"] == 2 and r["members"]["levels"]["HTTNV"]["count"] == 16
    # The same inputs again: no new version, and not a single unit read.
    again = consolidate_campaign(store, plan_187, campaign_id, late_at, changed_units=set())
    assert again.mode == "unchanged" and not again.units_updated and again.units_read == 0


def test_results_and_decisions_from_units_outside_the_path_are_read_as_needed(store, plan_187):
    """A member result submitted by another district's branch, and a decision taken by a
    committee outside the late branch's path: the codes of those units are loaded on demand."""
    campaign_id, units, members = _campaign(store, plan_187)
    late_at = START + dt.timedelta(days=1)
    late = [m for m in members if m.unit_code == "D2-B3"]
    changed = _record(
        store, plan_187, campaign_id, late_at,
        [_result(late[0].member_id, "D3-B1", "HTNV"), _result(late[1].member_id, "D2-B3", "HTTNV")],
        [OrgResult("D2-B3", "HTXSNV", "D1", False)],
    )
    run = consolidate_campaign(store, plan_187, campaign_id, late_at, changed_units=changed)

    assert run.mode == "incremental"
    assert {"D2-B3", "D2", "R", "D1"} <= set(run.units_updated)  # D1's committee now decides D2-B3
    assert run.units_read < len(units)
    assert _stored(store, campaign_id) == _full_recompute(store, plan_187, campaign_id, late_at)


def test_a_unit_written_without_an_import_sends_the_run_down_the_whole_tree(store, plan_187):
    campaign_id, units, members = _campaign(store, plan_187)
    with store.uow() as uow:  # no "org.imported" in the log: only the tree's fingerprint shows it
        parent = uow.session.scalar(select(Unit).where(Unit.campaign_id == campaign_id, Unit.code == "D1"))
        uow.session.add(Unit(campaign_id=campaign_id, code="D1-B4", name="Chi bộ D1-B4", kind="chi_bo_truc_thuoc",
                             parent_id=parent.id, path=parent.path + "D1-B4/", depth=parent.depth + 1, emails=[]))
        uow.commit()
    late_at = START + dt.timedelta(days=1)
    changed = _record(store, plan_187, campaign_id, late_at,
                      [_result(m.member_id, "D2-B3", "HTTNV") for m in members if m.unit_code == "D2-B3"])
    run = consolidate_campaign(store, plan_187, campaign_id, late_at, changed_units=changed)

    assert run.mode == "full" and run.versions["D1-B4"] == 1 and run.units_read == 14
    assert _stored(store, campaign_id) == _full_recompute(store, plan_187, campaign_id, late_at)


def test_an_import_that_counts_only_later_keeps_the_whole_tree_check(store, plan_187):
    """Time travel: the organization was re-imported with a new branch, effective after the run's
    ``now``. Its log entry is not consumed yet, so the run compares the whole tree, which differs."""
    campaign_id, units, members = _campaign(store, plan_187)
    later = START + dt.timedelta(days=5)
    grown = [*units, UnitNode("D3-B4", "Chi bộ D3-B4", "chi_bo_truc_thuoc", "D3")]
    _import(store, plan_187, campaign_id, grown, members, at=later, create=False)
    late_at = START + dt.timedelta(days=1)
    changed = _record(store, plan_187, campaign_id, late_at,
                      [_result(m.member_id, "D2-B3", "HTTNV") for m in members if m.unit_code == "D2-B3"])
    run = consolidate_campaign(store, plan_187, campaign_id, late_at, changed_units=changed)

    assert run.mode == "full" and run.versions["D3-B4"] == 1
    assert _stored(store, campaign_id) == _full_recompute(store, plan_187, campaign_id, late_at)


def test_a_rule_set_without_lines_goes_the_whole_tree_way_and_agrees(store, plan_187):
    """Each rule set on the same late branch: incremental (partial tree) or full, always equal to a recompute."""
    for rule_set in ("132/21", "124/25", "366/43"):
        plan = dataclasses.replace(plan_187, rule_set=rule_set)
        campaign_id, units, members = _campaign(store, plan)
        late_at = START + dt.timedelta(days=1)
        changed = _record(store, plan, campaign_id, late_at,
                          [_result(m.member_id, "D2-B3", "KHTNV") for m in members if m.unit_code == "D2-B3"])
        run = consolidate_campaign(store, plan, campaign_id, late_at, changed_units=changed)
        assert run.mode in ("incremental", "full") and set(run.units_updated) == {"D2-B3", "D2", "R"}
        assert _stored(store, campaign_id) == _full_recompute(store, plan, campaign_id, late_at)
