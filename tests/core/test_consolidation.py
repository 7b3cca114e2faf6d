"""Consolidation up the tree: hand-checked numbers per rule set, quotas, hashing, diff."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import random
import re

import pytest

from kiemdiem.consolidation import (
    ConsolidationInput,
    LinesInput,
    MemberRecord,
    MemberResult,
    NeedsFullRun,
    OrgResult,
    Override,
    UnitNode,
    UnitSummary,
    affected_units,
    consolidate,
    DIFF_TABLE_HEADER,
    consolidate_lines,
    diff,
    diff_csv,
    diff_is_empty,
    member_changes,
    member_lines_of,
    reconsolidate,
    reconsolidate_lines,
    render_diff_text,
    show_value,
    snapshot_hash,
    tally_lines,
    unit_hash,
)

EVAL = dt.date(2023, 12, 5)
OLD = dt.date(2012, 5, 19)


def member(mid, unit, status="active", joined=OLD, positions=()):
    return MemberRecord(mid, f"Nguyễn Văn {mid}", unit, status, joined, tuple(positions))


def result(mid, unit, final, **kw):
    fields = dict(
        self_level=final, proposed_level=final, final_level=final, disciplined=False,
        sick_leave_months=0.0, absent=False, score=None, note="", has_self_review=True,
    )
    fields.update(kw)
    return MemberResult(mid, unit, **fields)


UNITS = (
    UnitNode("DUK", "Đảng ủy Khối các cơ quan tỉnh", "cap_tren_co_so", None),
    UnitNode("DB01", "Đảng bộ Sở Công Thương", "dang_bo_co_so", "DUK"),
    UnitNode("CB1", "Chi bộ Văn phòng 1", "chi_bo_truc_thuoc", "DB01"),
    UnitNode("T1", "Tổ đảng 1", "to_dang", "CB1"),  # a party cell: never counted as an organization
    UnitNode("CB2", "Chi bộ Văn phòng 2", "chi_bo_truc_thuoc", "DB01"),
    UnitNode("CB3", "Chi bộ Khuyến công", "chi_bo_truc_thuoc", "DB01"),
    UnitNode("DB02", "Chi bộ Sở Xây dựng", "chi_bo_co_so", "DUK"),
)

MEMBERS = (
    # CB1: 6 members, A06 exempt.
    member("A01", "CB1", positions=("bi_thu",)), member("A02", "CB1"), member("A03", "CB1"),
    member("A04", "CB1"), member("A05", "CB1"), member("A06", "CB1", "exempt"),
    # CB2: 5 members, B04 suspended, B05 admitted 01/09/2023 (< 6 months before 05/12/2023).
    member("B01", "CB2", positions=("bi_thu",)), member("B02", "CB2"), member("B03", "CB2"),
    member("B04", "CB2", "suspended"), member("B05", "CB2", "probationary", dt.date(2023, 9, 1)),
    # CB3: 4 members, C03 absent at the meeting, C04 without any result yet.
    member("C01", "CB3"), member("C02", "CB3"), member("C03", "CB3"), member("C04", "CB3"),
    # DB02 (chi bộ cơ sở): 3 members.
    member("D01", "DB02"), member("D02", "DB02"), member("D03", "DB02"),
)


def scenario(rule_set: str) -> ConsolidationInput:
    score = {"HTXSNV": 93.0, "HTTNV": 80.0, "HTNV": 60.0, "KHTNV": 30.0}
    results = [
        result("A01", "CB1", "HTTNV"), result("A02", "CB1", "HTXSNV"), result("A03", "CB1", "HTTNV"),
        result("A04", "CB1", "HTTNV", sick_leave_months=4.0), result("A05", "CB1", "HTNV"),
        result("B01", "CB2", "HTTNV"), result("B02", "CB2", "HTTNV"), result("B03", "CB2", "KHTNV", disciplined=True),
        result("C01", "CB3", "HTTNV"), result("C02", "CB3", "HTTNV"),
        result("C03", "CB3", None, self_level=None, absent=True),
        result("D01", "DB02", "HTXSNV"), result("D02", "DB02", "HTTNV"), result("D03", "DB02", "HTTNV"),
    ]
    if rule_set == "366/43":
        results = [dataclasses.replace(r, score=score.get(r.final_level)) for r in results]
        # A03: 65 points is the HTNV band but rated HTTNV; C02: no score at all.
        results = [
            dataclasses.replace(r, score=65.0) if r.member_id == "A03"
            else dataclasses.replace(r, score=None) if r.member_id == "C02" else r
            for r in results
        ]
    orgs = (
        OrgResult("CB1", "HTTNV", "DB01", False, "HTTNV"),
        OrgResult("CB2", "HTXSNV", "DB01", False, "HTXSNV"),
        OrgResult("DB01", "HTTNV", "DUK", False, "HTXSNV"),
        OrgResult("DB02", "HTTNV", "DUK", False, "HTTNV"),
    )
    return ConsolidationInput(UNITS, MEMBERS, tuple(results), orgs, rule_set, EVAL)


def levels(**counts_percents):
    return {lv: {"count": c, "percent": p} for lv, (c, p) in counts_percents.items()}


def assert_common_numbers(out):
    db01 = out["DB01"].to_dict()
    # DB01: 15 members; not evaluated: A06 exempt, B04 suspended, B05 new → 12 evaluated.
    # Final levels: HTXSNV A02 (1); HTTNV A01 A03 A04 B01 B02 C01 C02 (7); HTNV A05 (1); KHTNV B03 (1)
    # → 10 classified, missing C03 C04 (2). Percent of 12: 1/12 = 8.3, 7/12 = 58.3.
    # HTXSNV/HTTNV = 1/7 = 14.3%; cap floor(0.2 × 7) = 1 → ok.
    assert db01["members"] == {
        "total": 15, "evaluated": 12,
        "not_evaluated": {"exempt": 1, "suspended": 1, "new_member": 1},
        "classified": 10, "missing": 2,
        "levels": levels(HTXSNV=(1, 8.3), HTTNV=(7, 58.3), HTNV=(1, 8.3), KHTNV=(1, 8.3)),
        "htxsnv_over_httnv_percent": 14.3,
        "quota": {"scope": "base_organization", "htxsnv": 1, "httnv": 7, "max_allowed": 1, "status": "ok"},
    }
    # Organizations under DB01: CB1, CB2, CB3 (T1 is a party cell) → 3; CB3 has no result.
    # DB01's committee decided CB1 HTTNV + CB2 HTXSNV → cap floor(0.2 × 1) = 0 → breach.
    assert db01["organizations"] == {
        "total": 3, "classified": 2, "missing": 1,
        "levels": levels(HTXSNV=(1, 33.3), HTTNV=(1, 33.3), HTNV=(0, 0.0), KHTNV=(0, 0.0)),
        "quota": {"scope": "committee", "htxsnv": 1, "httnv": 1, "max_allowed": 0, "status": "breach"},
    }
    assert db01["missing_results"] == {
        "members": [
            {"member_id": "C03", "full_name": "Nguyễn Văn C03", "unit_code": "CB3"},
            {"member_id": "C04", "full_name": "Nguyễn Văn C04", "unit_code": "CB3"},
        ],
        "organizations": ["CB3"],
    }
    assert db01["children"] == ["CB1", "CB2", "CB3"]
    assert db01["unit"] == {
        "code": "DB01", "name": "Đảng bộ Sở Công Thương", "kind": "dang_bo_co_so", "parent": "DUK",
        "result": {"level": "HTTNV", "self_level": "HTXSNV", "decided_by": "DUK", "disciplined": False},
    }

    duk = out["DUK"].to_dict()
    # DUK adds DB02 (D01 HTXSNV, D02 D03 HTTNV): 18 members, 15 evaluated,
    # HTXSNV 2 (13.3%), HTTNV 9 (60.0%), HTNV 1 (6.7%), KHTNV 1 (6.7%); 2/9 = 22.2%.
    # Above base organizations the cap is informational: scope subtree, status n/a.
    assert duk["members"] == {
        "total": 18, "evaluated": 15,
        "not_evaluated": {"exempt": 1, "suspended": 1, "new_member": 1},
        "classified": 13, "missing": 2,
        "levels": levels(HTXSNV=(2, 13.3), HTTNV=(9, 60.0), HTNV=(1, 6.7), KHTNV=(1, 6.7)),
        "htxsnv_over_httnv_percent": 22.2,
        "quota": {"scope": "subtree", "htxsnv": 2, "httnv": 9, "max_allowed": 1, "status": "n/a"},
    }
    # Organizations under DUK: DB01, CB1, CB2, CB3, DB02 = 5; classified 4 (1 HTXSNV = 20%, 3 HTTNV = 60%).
    # DUK's committee decided DB01 and DB02, both HTTNV → 0 HTXSNV, max 0 → ok.
    assert duk["organizations"] == {
        "total": 5, "classified": 4, "missing": 1,
        "levels": levels(HTXSNV=(1, 20.0), HTTNV=(3, 60.0), HTNV=(0, 0.0), KHTNV=(0, 0.0)),
        "quota": {"scope": "committee", "htxsnv": 0, "httnv": 2, "max_allowed": 0, "status": "ok"},
    }
    assert duk["children"] == ["DB01", "DB02"]

    db02 = out["DB02"].to_dict()
    # DB02: 1 HTXSNV on 2 HTTNV → floor(0.4) = 0 allowed → breach.
    assert db02["members"]["quota"] == {
        "scope": "base_organization", "htxsnv": 1, "httnv": 2, "max_allowed": 0, "status": "breach"
    }
    assert db02["members"]["htxsnv_over_httnv_percent"] == 50.0
    assert db02["organizations"]["total"] == 0
    assert db02["organizations"]["quota"]["status"] == "n/a"

    cb3 = out["CB3"].to_dict()
    # CB3: 4 evaluated, 2 HTTNV (50.0%), 2 missing; branch inside a base org: cap n/a.
    assert (cb3["members"]["evaluated"], cb3["members"]["classified"], cb3["members"]["missing"]) == (4, 2, 2)
    assert cb3["members"]["levels"]["HTTNV"] == {"count": 2, "percent": 50.0}
    assert cb3["members"]["quota"]["status"] == "n/a"
    assert out["CB1"].to_dict()["organizations"]["total"] == 0  # T1 is not an organization
    assert out["T1"].to_dict()["members"]["total"] == 0
    return db01, duk


def keys(summary):
    return [f["key"] for f in summary["findings"]]


def tallies(lines: dict) -> dict:
    return {code: tally_lines(code, found) for code, found in lines.items()}


def test_rule_set_132_21_tree():
    out = consolidate(scenario("132/21"))
    db01, duk = assert_common_numbers(out)
    # A04 was on sick leave 4 months and rated HTTNV: only 132/21 caps that at HTNV.
    assert keys(db01) == [
        "absent_pending:CB3:C03",
        "cap_organizations:DB01:",
        "sick_leave_ceiling:CB1:A04",
    ]
    assert keys(duk) == [
        "absent_pending:CB3:C03",
        "cap_members:DB02:",
        "cap_organizations:DB01:",
        "sick_leave_ceiling:CB1:A04",
    ]
    cap = next(f for f in duk["findings"] if f["key"] == "cap_members:DB02:")
    assert cap["message"].startswith("Có 1 đảng viên HTXSNV trên 2 HTTNV; tối đa được 0 (20%)")
    assert cap["regulation"] == "Quy định 132-QĐ/TW; Hướng dẫn 21-HD/BTCTW"
    assert keys(out["CB2"].to_dict()) == []  # B03 disciplined and KHTNV: fine


def test_rule_set_124_25_tree():
    out = consolidate(scenario("124/25"))
    db01, duk = assert_common_numbers(out)
    assert keys(db01) == ["absent_pending:CB3:C03", "cap_organizations:DB01:"]
    assert keys(duk) == ["absent_pending:CB3:C03", "cap_members:DB02:", "cap_organizations:DB01:"]
    assert {f["regulation"] for f in duk["findings"]} == {"Quy định 124-QĐ/TW; Hướng dẫn 25-HD/BTCTW"}
    assert keys(out["CB3"].to_dict()) == ["absent_pending:CB3:C03"]
    assert keys(out["DB02"].to_dict()) == ["cap_members:DB02:"]


def test_rule_set_366_43_tree():
    out = consolidate(scenario("366/43"))
    db01, duk = assert_common_numbers(out)
    # A03: 65 points (HTNV band) but HTTNV; C02: HTTNV without a score.
    assert keys(db01) == [
        "absent_pending:CB3:C03",
        "cap_organizations:DB01:",
        "score_band:CB1:A03",
        "score_missing:CB3:C02",
    ]
    band = next(f for f in db01["findings"] if f["rule"] == "score_band")
    assert band["data"] == {"score": 65.0, "band": "HTNV", "level": "HTTNV"}
    assert keys(duk) == sorted(keys(db01) + ["cap_members:DB02:"])


def test_cap_boundary_through_consolidation_and_override():
    units = (UnitNode("DB", "Đảng bộ", "dang_bo_co_so", None), UnitNode("CB", "Chi bộ", "chi_bo_truc_thuoc", "DB"))
    members = tuple(member(f"M{i:02}", "CB") for i in range(13))
    results = tuple(result(f"M{i:02}", "CB", "HTTNV") for i in range(10)) + (
        result("M10", "CB", "HTXSNV"), result("M11", "CB", "HTXSNV"),
    )
    inp = ConsolidationInput(units, members, results, (), "124/25", EVAL)
    quota = consolidate(inp)["DB"].to_dict()["members"]["quota"]
    assert quota == {"scope": "base_organization", "htxsnv": 2, "httnv": 10, "max_allowed": 2, "status": "ok"}

    third = dataclasses.replace(inp, member_results=results + (result("M12", "CB", "HTXSNV"),))
    summary = consolidate(third)["DB"].to_dict()
    assert summary["members"]["quota"] == {
        "scope": "base_organization", "htxsnv": 3, "httnv": 10, "max_allowed": 2, "status": "breach"
    }
    assert summary["members"]["htxsnv_over_httnv_percent"] == 30.0
    [cap] = [f for f in summary["findings"] if f["rule"] == "cap_members"]
    assert cap["message"].startswith("Có 3 đảng viên HTXSNV trên 10 HTTNV; tối đa được 2 (20%)")

    at = dt.datetime(2023, 12, 12, 8, 0)
    overridden = dataclasses.replace(third, overrides=(Override("cap_members:DB:", "Trưởng ban Tổ chức", "Có thành tích đột xuất", at),))
    summary = consolidate(overridden)["DB"].to_dict()
    assert summary["members"]["quota"]["status"] == "overridden"
    [cap] = [f for f in summary["findings"] if f["rule"] == "cap_members"]
    assert cap["overridden"] == {"by": "Trưởng ban Tổ chức", "reason": "Có thành tích đột xuất", "at": at.isoformat()}


def test_org_quota_overridden_for_committee():
    inp = scenario("124/25")
    inp = dataclasses.replace(inp, overrides=(Override("cap_organizations:DB01:", "BTV", "lý do", dt.datetime(2023, 12, 1)),))
    assert consolidate(inp)["DB01"].to_dict()["organizations"]["quota"]["status"] == "overridden"


def test_summary_round_trips_through_json():
    out = consolidate(scenario("366/43"))
    for code, summary in out.items():
        data = json.loads(json.dumps(summary.to_dict(), ensure_ascii=False))
        assert UnitSummary.from_dict(data) == summary
        assert unit_hash(data) == unit_hash(summary)
        for listed in (data["findings"], data["children"], data["missing_results"]["members"]):
            listed.reverse()  # a store may return lists in any order
        assert UnitSummary.from_dict(data) == summary
        assert unit_hash(data) == unit_hash(summary)


def test_affected_units_are_changed_and_ancestors():
    assert affected_units(UNITS, {"CB3"}) == {"CB3", "DB01", "DUK"}
    assert affected_units(UNITS, {"T1", "DB02"}) == {"T1", "CB1", "DB01", "DUK", "DB02"}
    assert affected_units(UNITS, {"nope"}) == set()


def late_result(inp):
    """C04's result arrives (HTXSNV) and C03, absent before, is classified HTTNV at the next meeting."""
    extra = (result("C04", "CB3", "HTXSNV"), result("C03", "CB3", "HTTNV", absent=True))
    kept = tuple(r for r in inp.member_results if r.member_id != "C03")
    return dataclasses.replace(inp, member_results=kept + extra)


def test_reconsolidate_reuses_untouched_units_and_equals_full_run():
    before = consolidate(scenario("124/25"))
    after_input = late_result(scenario("124/25"))
    again = reconsolidate(after_input, before, {"CB3"})
    assert again == consolidate(after_input)
    for untouched in ("CB1", "CB2", "T1", "DB02"):
        assert again[untouched] is before[untouched]
    # Also from stored JSON dicts.
    stored = {code: json.loads(json.dumps(s.to_dict())) for code, s in before.items()}
    assert reconsolidate(after_input, stored, {"CB3"}) == consolidate(after_input)


def test_reconsolidate_detects_tree_changes_and_overrides():
    before = consolidate(scenario("124/25"))
    inp = scenario("124/25")
    moved = tuple(dataclasses.replace(u, parent_code="DUK") if u.code == "CB3" else u for u in inp.units)
    inp = dataclasses.replace(
        inp, units=moved, overrides=(Override("cap_members:DB02:", "BTV", "đồng ý", dt.datetime(2023, 12, 9)),)
    )
    assert reconsolidate(inp, before, set()) == consolidate(inp)


def test_snapshot_hash_ignores_input_order_and_sees_changes():
    inp = scenario("132/21")
    rnd = random.Random(7)

    def shuffled(items):
        items = list(items)
        rnd.shuffle(items)
        return tuple(items)

    reordered = dataclasses.replace(
        inp, units=shuffled(inp.units), members=shuffled(inp.members),
        member_results=shuffled(inp.member_results), org_results=shuffled(inp.org_results),
    )
    first = consolidate(inp)
    assert snapshot_hash(consolidate(reordered)) == snapshot_hash(first)
    as_dicts = {code: s.to_dict() for code, s in first.items()}
    for summary in as_dicts.values():  # a store may hand lists back in any order
        summary["findings"].reverse()
        summary["children"].reverse()
    assert snapshot_hash(as_dicts) == snapshot_hash(first)
    assert snapshot_hash(consolidate(late_result(inp))) != snapshot_hash(first)


def test_two_members_swapping_levels_change_the_unit_hash_and_are_both_listed():
    """Summaries do not list members, yet a swap that leaves every count as it was is a change:
    the unit's own-member key moves (and only that unit's hash with it), and the diff names both."""
    inp = scenario("124/25")
    levels = {r.member_id: r.final_level for r in inp.member_results if r.unit_code == "CB1" and r.member_id != "A01"}  # not the secretary
    a, b = next((x, y) for x in sorted(levels) for y in sorted(levels) if levels[x] and levels[y] and levels[x] != levels[y])
    swapped = dataclasses.replace(inp, member_results=tuple(
        dataclasses.replace(r, final_level=levels[b] if r.member_id == a else levels[a]) if r.member_id in (a, b) else r
        for r in inp.member_results
    ))
    before, after = consolidate(inp), consolidate(swapped)
    assert after["CB1"].level_counts == before["CB1"].level_counts and after["CB1"].own_members.counts == before["CB1"].own_members.counts
    assert after["CB1"].own_members.key != before["CB1"].own_members.key
    assert {c for c in before if unit_hash(before[c]) != unit_hash(after[c])} == {"CB1"}
    changes = diff(before, after, members=member_changes(member_lines_of(inp), member_lines_of(swapped)))
    assert [(m["member_id"], m["old_level"], m["new_level"]) for m in changes["members"]] == [
        (a, levels[a], levels[b]), (b, levels[b], levels[a])
    ]
    assert reconsolidate(swapped, before, {"CB1"}) == after


def test_diff_and_text_after_a_late_result():
    before = {code: s.to_dict() for code, s in consolidate(scenario("124/25")).items()}
    after = {code: s.to_dict() for code, s in consolidate(late_result(scenario("124/25"))).items()}
    changes = diff(before, after, members=member_changes(member_lines_of(scenario("124/25")), member_lines_of(late_result(scenario("124/25")))))
    assert changes["members"] == [
        {"member_id": "C03", "full_name": "Nguyễn Văn C03", "unit_code": "CB3", "unit_name": "Chi bộ Khuyến công",
         "old_level": None, "new_level": "HTTNV"},
        {"member_id": "C04", "full_name": "Nguyễn Văn C04", "unit_code": "CB3", "unit_name": "Chi bộ Khuyến công",
         "old_level": None, "new_level": "HTXSNV"},
    ]
    # Totals moved in CB3, then DB01, then DUK: deepest first.
    assert [t["unit_code"] for t in changes["totals"]] == ["CB3", "DB01", "DUK"]
    db01 = {c["field"]: (c["old"], c["new"]) for c in changes["totals"][1]["changes"]}
    # DB01 now: HTXSNV 2, HTTNV 8 → floor(1.6) = 1 allowed → breach; 12 classified, none missing.
    assert db01["members.levels.HTXSNV.count"] == (1, 2)
    assert db01["members.levels.HTTNV.count"] == (7, 8)
    assert db01["members.classified"] == (10, 12)
    assert db01["members.missing"] == (2, 0)
    assert db01["members.quota.status"] == ("ok", "breach")
    # Above the base organizations the member quota is a subtree figure for reference only: not reported.
    duk = {c["field"] for c in changes["totals"][2]["changes"]}
    assert "members.levels.HTXSNV.count" in duk and not [f for f in duk if f.startswith("members.quota.")]
    assert [f["key"] for f in changes["findings_appeared"]] == ["cap_members:DB01:"]
    assert [f["key"] for f in changes["findings_gone"]] == ["absent_pending:CB3:C03"]

    text = render_diff_text(changes)
    assert "Nguyễn Văn C04 (C04), Chi bộ Khuyến công: chưa có kết quả → HTXSNV (Hoàn thành xuất sắc nhiệm vụ)" in text
    assert "Đảng viên HTXSNV: số: 1 → 2" in text and "Đảng viên HTXSNV: tỷ lệ (%): 8,3 → 16,7" in text
    assert "Đảng viên: tình trạng hạn mức 20%: đạt → vượt" in text
    assert "Vi phạm, lưu ý mới (1):" in text and "Có 2 đảng viên HTXSNV trên 8 HTTNV; tối đa được 1 (20%)" in text
    assert not diff_is_empty(changes) and diff_is_empty(diff(before, before))
    assert render_diff_text(diff(before, before)) == "Không có thay đổi so với lần tổng hợp trước.\n"


def province(n_base=1000, branches=3, n_members=90_000, seed=3):
    """Province preset: ~4,000 units, 90,000 members, every result in."""
    rnd = random.Random(seed)
    units = [UnitNode("TU", "Tỉnh ủy", "cap_tren_co_so", None)]
    branch_codes = []
    for k in range(20):
        units.append(UnitNode(f"K{k}", f"Đảng bộ khối {k}", "cap_tren_co_so", "TU"))
    for b in range(n_base):
        code = f"B{b}"
        units.append(UnitNode(code, f"Đảng bộ cơ sở {b}", "dang_bo_co_so", f"K{b % 20}"))
        for c in range(branches):
            branch_codes.append(f"{code}C{c}")
            units.append(UnitNode(f"{code}C{c}", f"Chi bộ {c}", "chi_bo_truc_thuoc", code))
    pool = ["HTXSNV"] + ["HTTNV"] * 6 + ["HTNV", "KHTNV"]
    members, results = [], []
    for i in range(n_members):
        unit = branch_codes[i % len(branch_codes)]
        members.append(MemberRecord(f"M{i}", f"Đảng viên {i}", unit, "exempt" if i % 41 == 0 else "active", OLD, ()))
        if i % 53:
            results.append(result(f"M{i}", unit, rnd.choice(pool)))
    orgs = [OrgResult(u.code, rnd.choice(pool), u.parent_code, False) for u in units[1:]]
    return ConsolidationInput(tuple(units), tuple(members), tuple(results), tuple(orgs), "124/25", EVAL)


def test_province_scale_consolidation_and_incremental_rerun():
    # Speed is measured in bench/consolidation_bench.py; this checks the results at province size.
    inp = province()
    assert len(inp.units) == 4021
    out = consolidate(inp)
    assert out["TU"].members_total == 90_000
    assert sum(out[f"K{k}"].members_total for k in range(20)) == 90_000

    # A late result in one branch rebuilds only that branch and its three ancestors.
    with_result = {r.member_id for r in inp.member_results}
    late = next(m for m in inp.members if m.member_id not in with_result and m.status == "active")
    branch = late.unit_code
    base = branch.split("C")[0]
    changed = dataclasses.replace(inp, member_results=inp.member_results + (result(late.member_id, branch, "HTNV"),))
    again = reconsolidate(changed, out, {branch})
    assert {code for code in again if again[code] is not out[code]} == {branch, base, f"K{int(base[1:]) % 20}", "TU"}
    assert again["TU"].level_counts[2] == out["TU"].level_counts[2] + 1
    assert len(again["TU"].missing_members) == len(out["TU"].missing_members) - 1

    # The same from member lines and the previous summaries alone: only the chain is handed over.
    chain = {branch, base, f"K{int(base[1:]) % 20}", "TU"}
    nodes = [u for u in changed.units if u.code in chain or u.parent_code in chain]
    lines = {code: [(m.member_id, m.full_name, result_of.final_level if (result_of := finals.get(m.member_id)) else None,
                     "exempt" if m.status == "exempt" else None) for m in changed.members if m.unit_code == code]
             for finals in [{r.member_id: r for r in changed.member_results}] for code in chain}
    orgs = [o for o in changed.org_results if o.unit_code in chain or o.decided_by in chain]
    own = tuple(m for m in changed.members if m.unit_code in chain)  # full records: more than the rules need
    own_results = tuple(r for r in changed.member_results if r.unit_code in chain)
    partial = LinesInput(tuple(nodes), tallies(lines), own, own_results, tuple(orgs), "124/25", EVAL)
    rebuilt = reconsolidate_lines(partial, {code: out[code].to_dict() for code in chain}, chain)
    assert rebuilt == {code: again[code] for code in chain}


def test_consolidate_lines_equals_consolidate():
    for rule_set in ("132/21", "124/25", "366/43"):
        inp = scenario(rule_set)
        rs_reason = {"A06": "exempt", "B04": "suspended", "B05": "new_member"}
        finals = {r.member_id: r.final_level for r in inp.member_results}
        lines: dict[str, list] = {}
        for m in inp.members:
            lines.setdefault(m.unit_code, []).append((m.member_id, m.full_name, finals.get(m.member_id), rs_reason.get(m.member_id)))
        expected = consolidate(inp)
        reported = {f.member_id for s in expected.values() for f in s.findings}
        examined = tuple(m for m in inp.members if m.member_id in reported)
        results = tuple(r for r in inp.member_results if r.member_id in reported)
        lines_input = LinesInput(inp.units, tallies(lines), examined, results, inp.org_results, rule_set, EVAL, inp.overrides)
        assert consolidate_lines(lines_input) == expected


def test_diff_lists_totals_in_the_same_order_however_the_payload_was_stored():
    """Stored payloads are canonical JSON (sorted keys); a difference still reads total, evaluated,
    ..., HTXSNV, HTTNV, HTNV, KHTNV as ``to_dict`` writes them."""
    before = {code: s.to_dict() for code, s in consolidate(scenario("124/25")).items()}
    after = {code: s.to_dict() for code, s in consolidate(late_result(scenario("124/25"))).items()}
    stored = {code: json.loads(s.canonical_json()) for code, s in consolidate(scenario("124/25")).items()}
    assert list(stored["DB01"]["members"]) != list(before["DB01"]["members"])  # keys come back sorted
    assert diff(stored, after) == diff(before, after)
    assert render_diff_text(diff(stored, after)) == render_diff_text(diff(before, after))
    fields = [c["field"] for c in diff(stored, after)["totals"][1]["changes"]]
    assert fields.index("members.levels.HTXSNV.count") < fields.index("members.levels.HTTNV.count")


def test_canonical_json_is_what_unit_hash_hashes():
    for code, summary in consolidate(scenario("366/43")).items():
        text = summary.canonical_json()
        assert hashlib.sha256(text.encode()).hexdigest() == unit_hash(summary) == unit_hash(summary.to_dict())
        assert json.loads(text) == json.loads(json.dumps(summary.to_dict()))


def test_reconsolidate_lines_rebuilds_whole_when_two_units_share_finding_keys():
    """Finding keys are rule:unit:member; with ':' in codes two units can share one. Their order in
    an ancestor's list then follows the tree, which a partial rebuild cannot see: it refuses."""
    units = (
        UnitNode("R", "Gốc", "dang_bo_co_so", None),
        UnitNode("A", "Chi bộ A", "chi_bo_truc_thuoc", "R"),
        UnitNode("A:B", "Chi bộ A:B", "chi_bo_truc_thuoc", "R"),
    )
    members = (member("B:x", "A"), member("x", "A:B"))
    results = (result("B:x", "A", "HTTNV", disciplined=True), result("x", "A:B", "HTTNV", disciplined=True))
    inp = ConsolidationInput(units, members, results, (), "124/25", EVAL)
    before = consolidate(inp)
    keys = [f.key for f in before["R"].findings]
    assert keys == ["disciplined_member:A:B:x", "disciplined_member:A:B:x"]
    lines = {"A": [("B:x", "Nguyễn Văn B:x", "HTTNV", None)], "R": []}
    partial = LinesInput(units, tallies(lines), members[:1], results[:1], (), "124/25", EVAL)
    with pytest.raises(NeedsFullRun):
        reconsolidate_lines(partial, before, {"A", "R"})


def test_the_diff_as_a_table_for_excel_says_what_the_email_says():
    """The diff email's attachment: Vietnamese headers and words, decimal commas, UTF-8 with a
    byte-order mark so that Excel reads the accents (the JSON it replaces had English keys)."""
    before = {code: s.to_dict() for code, s in consolidate(scenario("124/25")).items()}
    after = {code: s.to_dict() for code, s in consolidate(late_result(scenario("124/25"))).items()}
    changes = diff(before, after, members=member_changes(member_lines_of(scenario("124/25")), member_lines_of(late_result(scenario("124/25")))))
    data = diff_csv(changes)
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert tuple(rows[0]) == DIFF_TABLE_HEADER
    assert ["Kết quả đảng viên", "CB3", "Chi bộ Khuyến công", "Nguyễn Văn C04 (C04)", "chưa có kết quả",
            "HTXSNV (Hoàn thành xuất sắc nhiệm vụ)"] in rows
    assert ["Số liệu tổng hợp", "DB01", after["DB01"]["unit"]["name"], "Đảng viên HTXSNV: tỷ lệ (%)", "8,3", "16,7"] in rows
    assert ["Số liệu tổng hợp", "DB01", after["DB01"]["unit"]["name"], "Đảng viên: tình trạng hạn mức 20%", "đạt", "vượt"] in rows
    appeared = [r for r in rows if r[0] == "Vi phạm, lưu ý mới"]
    assert len(appeared) == 1 and appeared[0][1] == "DB01" and "tối đa được 1 (20%)" in appeared[0][3]
    assert [r[1] for r in rows if r[0] == "Vi phạm, lưu ý không còn"] == ["CB3"]
    # One row per change the email lists, nothing else.
    text = render_diff_text(changes)
    assert len(rows) - 1 == len(changes["members"]) + sum(len(t["changes"]) for t in changes["totals"]) + 2
    assert all(r[3] in text or r[3].split("] ", 1)[-1] in text for r in rows[1:])
    assert diff_csv(diff(before, before)) == b""


def test_percentages_in_a_diff_keep_their_decimal():
    """"16,7 → 20" read as if the second were rounded differently: every percentage has its one decimal."""
    assert show_value(20.0, "members.levels.HTXSNV.percent") == "20,0"
    assert show_value(100.0, "members.htxsnv_over_httnv_percent") == "100,0"
    assert show_value(16.7, "organizations.levels.HTTNV.percent") == "16,7"
    assert show_value(89.99999, "score") == "89,99999" and show_value(20.0) == "20" and show_value(None, "x.percent") == "—"
    before = {code: s.to_dict() for code, s in consolidate(scenario("124/25")).items()}
    after = {code: s.to_dict() for code, s in consolidate(late_result(scenario("124/25"))).items()}
    text = render_diff_text(diff(before, after))
    percent_lines = [line for line in text.splitlines() if "tỷ lệ" in line]
    assert percent_lines and all(re.search(r": \d+,\d → \d+,\d$", line) for line in percent_lines), percent_lines
