"""Rule sets: each rule's finding, the 20% cap boundary, overrides."""

from __future__ import annotations

import datetime as dt

import pytest

from kiemdiem.consolidation import ConsolidationInput, MemberRecord, MemberResult, OrgResult, Override, UnitNode
from kiemdiem.rules import build_context, cap_max_allowed, get_rule_set
from kiemdiem.rules.base import Finding, months_before

EVAL = dt.date(2023, 12, 5)
OLD = dt.date(2010, 3, 1)


def member(mid, unit, status="active", joined=OLD, positions=()):
    return MemberRecord(mid, f"Đảng viên {mid}", unit, status, joined, tuple(positions))


def result(mid, unit, final, proposed=None, **kw):
    fields = dict(
        self_level=final, proposed_level=proposed, final_level=final, disciplined=False,
        sick_leave_months=0.0, absent=False, score=None, note="", has_self_review=True,
    )
    fields.update(kw)
    return MemberResult(mid, unit, **fields)


def base_tree():
    return (
        UnitNode("DUK", "Đảng ủy Khối", "cap_tren_co_so", None),
        UnitNode("DB01", "Đảng bộ Sở Công Thương", "dang_bo_co_so", "DUK"),
        UnitNode("CB1", "Chi bộ Văn phòng 1", "chi_bo_truc_thuoc", "DB01"),
        UnitNode("CB2", "Chi bộ Văn phòng 2", "chi_bo_truc_thuoc", "DB01"),
        UnitNode("DB02", "Chi bộ cơ sở Sở Xây dựng", "chi_bo_co_so", "DUK"),
    )


def check(rule_set, members, results=(), orgs=(), overrides=(), units=None):
    rs = get_rule_set(rule_set)
    ctx = build_context(rs, units or base_tree(), members, results, orgs, EVAL, overrides)
    return rs.check(ctx)


def by_rule(findings, rule):
    return [f for f in findings if f.rule == rule]


def cap_members(n_httnv, n_htxsnv, unit="CB1"):
    members, results = [], []
    for i in range(n_httnv):
        members.append(member(f"T{i:02}", unit))
        results.append(result(f"T{i:02}", unit, "HTTNV"))
    for i in range(n_htxsnv):
        members.append(member(f"X{i:02}", unit))
        results.append(result(f"X{i:02}", unit, "HTXSNV"))
    return members, results


# --------------------------------------------------------------------------- registry


def test_get_rule_set_codes_and_unknown():
    assert get_rule_set("132/21").code == "132/21"
    assert get_rule_set("124-25").code == "124/25"
    assert get_rule_set(" 366/43 ").regulation == "Quy định 366-QĐ/TW; Hướng dẫn 43-HD/BTCTW"
    with pytest.raises(ValueError, match="không được hỗ trợ"):
        get_rule_set("76/10")


def test_cap_max_allowed_is_integer_floor():
    assert [cap_max_allowed(n) for n in (0, 4, 5, 9, 10, 14, 15, 35)] == [0, 0, 1, 1, 2, 2, 3, 7]


# --------------------------------------------------------------------------- not evaluated


@pytest.mark.parametrize("code", ["132/21", "124/25", "366/43"])
def test_not_evaluated_reasons(code):
    rs = get_rule_set(code)
    assert rs.member_not_evaluated_reason(member("A", "CB1", "exempt"), EVAL) == "exempt"
    assert rs.member_not_evaluated_reason(member("A", "CB1", "suspended"), EVAL) == "suspended"
    # 05/06/2023 is exactly six months before 05/12/2023: evaluated; one day later: too new.
    assert rs.member_not_evaluated_reason(member("A", "CB1", "probationary", dt.date(2023, 6, 5)), EVAL) is None
    assert rs.member_not_evaluated_reason(member("A", "CB1", "probationary", dt.date(2023, 6, 6)), EVAL) == "new_member"
    assert rs.member_not_evaluated_reason(member("A", "CB1", "active", None), EVAL) is None


def test_months_before_clamps_to_month_end():
    assert months_before(dt.date(2023, 8, 31), 6) == dt.date(2023, 2, 28)
    assert months_before(dt.date(2024, 3, 15), 6) == dt.date(2023, 9, 15)


def test_not_evaluated_member_with_level_is_an_error_and_with_a_proposal_a_warning():
    members = [member("E1", "CB1", "exempt"), member("N1", "CB1", joined=dt.date(2023, 10, 1)), member("S1", "CB1", "suspended")]
    results = [result("E1", "CB1", "HTNV"), result("N1", "CB1", None, proposed="HTTNV"), result("S1", "CB1", None, self_level=None)]
    found = by_rule(check("124/25", members, results), "not_evaluated_classified")
    assert [(f.member_id, f.severity, f.data["reason"]) for f in found] == [
        ("E1", "error", "exempt"),
        ("N1", "warning", "new_member"),  # only proposed by the branch, as every member rule
    ]
    assert "miễn công tác và sinh hoạt đảng" in found[0].message and "nhưng được xếp loại HTNV" in found[0].message
    assert "nhưng được đề xuất xếp loại HTTNV" in found[1].message


# --------------------------------------------------------------------------- 20% cap


@pytest.mark.parametrize("code", ["132/21", "124/25", "366/43"])
def test_cap_boundary_ten_httnv_allow_two_htxsnv(code):
    members, results = cap_members(10, 2)
    assert by_rule(check(code, members, results), "cap_members") == []


@pytest.mark.parametrize("code", ["132/21", "124/25", "366/43"])
def test_cap_third_htxsnv_is_a_breach(code):
    members, results = cap_members(10, 3)
    [finding] = by_rule(check(code, members, results), "cap_members")
    assert finding.unit_code == "DB01"  # counted on the base organization, not the branch
    assert finding.severity == "error"
    assert finding.data == {"htxsnv": 3, "httnv": 10, "max_allowed": 2}
    assert finding.message.startswith("Có 3 đảng viên HTXSNV trên 10 HTTNV; tối đa được 2 (20%)")
    assert finding.key == "cap_members:DB01:"


def test_cap_counts_final_levels_only_and_whole_base_organization():
    # CB1: 5 HTTNV + 1 HTXSNV; CB2: 4 HTTNV + 1 HTXSNV final, + 1 proposed HTXSNV not yet decided.
    # DB01 totals on final levels: 2 HTXSNV / 9 HTTNV → max floor(1.8) = 1 → breach by 1.
    m1, r1 = cap_members(5, 1, "CB1")
    m2 = [member(f"B{i}", "CB2") for i in range(6)]
    r2 = [result(f"B{i}", "CB2", "HTTNV") for i in range(4)]
    r2 += [result("B4", "CB2", "HTXSNV"), result("B5", "CB2", None, proposed="HTXSNV")]
    [finding] = by_rule(check("124/25", m1 + m2, r1 + r2), "cap_members")
    assert finding.data == {"htxsnv": 2, "httnv": 9, "max_allowed": 1}


def test_cap_is_per_base_organization():
    # DB01 (via CB1): 5 HTTNV + 1 HTXSNV → max 1: ok.
    # DB02 (chi bộ cơ sở): 4 HTTNV + 1 HTXSNV → max 0: breach.
    # Together they would be 9/2 (max 1), but the cap is never checked across base organizations.
    m1, r1 = cap_members(5, 1, "CB1")
    m2 = [member(f"S{i}", "DB02") for i in range(5)]
    r2 = [result(f"S{i}", "DB02", "HTTNV") for i in range(4)] + [result("S4", "DB02", "HTXSNV")]
    found = by_rule(check("132/21", m1 + m2, r1 + r2), "cap_members")
    assert [(f.unit_code, f.data["max_allowed"]) for f in found] == [("DB02", 0)]


def test_not_evaluated_members_are_not_counted_in_cap():
    members, results = cap_members(5, 1)
    members.append(member("E", "CB1", "exempt"))
    results.append(result("E", "CB1", "HTXSNV"))  # wrong, reported separately, but not counted
    found = check("124/25", members, results)
    assert by_rule(found, "cap_members") == []
    assert [f.member_id for f in by_rule(found, "not_evaluated_classified")] == ["E"]


def test_org_cap_per_deciding_committee():
    units = (
        UnitNode("DUK", "Đảng ủy Khối", "cap_tren_co_so", None),
        *[UnitNode(f"D{i}", f"Đảng bộ {i}", "dang_bo_co_so", "DUK") for i in range(8)],
        *[UnitNode(f"D0C{i}", f"Chi bộ {i}", "chi_bo_truc_thuoc", "D0") for i in range(6)],
    )
    # DUK decides 8 base organizations: 2 HTXSNV, 5 HTTNV, 1 HTNV → max floor(1.0) = 1 → breach.
    orgs = [OrgResult("D0", "HTXSNV", "DUK", False), OrgResult("D1", "HTXSNV", "DUK", False)]
    orgs += [OrgResult(f"D{i}", "HTTNV", "DUK", False) for i in range(2, 7)]
    orgs += [OrgResult("D7", "HTNV", "DUK", False)]
    # D0 decides its 6 branches: 1 HTXSNV, 5 HTTNV → max 1 → ok.
    orgs += [OrgResult("D0C0", "HTXSNV", "D0", False)] + [OrgResult(f"D0C{i}", "HTTNV", "D0", False) for i in range(1, 6)]
    [finding] = by_rule(check("124/25", [], (), orgs, units=units), "cap_organizations")
    assert finding.unit_code == "DUK"
    assert finding.data == {"htxsnv": 2, "httnv": 5, "max_allowed": 1, "committee": "DUK"}
    assert finding.message.startswith("Có 2 tổ chức đảng HTXSNV trên 5 HTTNV; tối đa được 1 (20%)")


def test_org_cap_with_committee_outside_tree_is_placed_on_common_ancestor():
    orgs = [OrgResult("CB1", "HTXSNV", "BTV-DB01", False), OrgResult("CB2", "HTTNV", "BTV-DB01", False)]
    [finding] = by_rule(check("124/25", [], (), orgs), "cap_organizations")
    assert (finding.unit_code, finding.data["committee"]) == ("DB01", "BTV-DB01")


# --------------------------------------------------------------------------- discipline


def test_disciplined_member_must_be_khtnv():
    members = [member(m, "CB1") for m in ("A", "B", "C")]
    results = [
        result("A", "CB1", "HTNV", disciplined=True),
        result("B", "CB1", None, proposed="HTTNV", disciplined=True),
        result("C", "CB1", "KHTNV", disciplined=True),
    ]
    found = by_rule(check("124/25", members, results), "disciplined_member")
    assert [(f.member_id, f.severity, f.data["level"]) for f in found] == [("A", "error", "HTNV"), ("B", "warning", "HTTNV")]
    assert "bị kỷ luật trong năm" in found[0].message


def test_disciplined_org_must_be_khtnv():
    orgs = [
        OrgResult("CB1", "HTTNV", "DB01", True),
        OrgResult("CB2", "KHTNV", "DB01", True),
        OrgResult("DB02", None, None, True, self_level="HTXSNV"),
    ]
    found = by_rule(check("132/21", [], (), orgs), "disciplined_org")
    assert [(f.unit_code, f.severity) for f in found] == [("CB1", "error"), ("DB02", "warning")]


# --------------------------------------------------------------------------- head, review, absence


def test_head_not_above_the_branch():
    members = [
        member("H1", "CB1", positions=("bi_thu",)),
        member("H2", "CB2", positions=("bi_thu", "dang_uy_vien")),
        member("P1", "CB1", positions=("pho_bi_thu",)),
    ]
    results = [result("H1", "CB1", "HTXSNV"), result("H2", "CB2", "HTTNV"), result("P1", "CB1", "HTXSNV")]
    orgs = [OrgResult("CB1", "HTTNV", "DB01", False), OrgResult("CB2", "HTTNV", "DB01", False)]
    found = by_rule(check("124/25", members, results, orgs), "head_above_unit")
    assert [(f.member_id, f.severity, f.data) for f in found] == [
        ("H1", "error", {"level": "HTXSNV", "unit_level": "HTTNV"})
    ]
    # Unknown branch level: nothing to compare against.
    assert by_rule(check("124/25", members, results), "head_above_unit") == []


def test_classification_without_self_review():
    members = [member("A", "CB1"), member("B", "CB1"), member("C", "CB1")]
    results = [
        result("A", "CB1", "HTTNV", has_self_review=False),
        result("B", "CB1", "HTTNV"),
        result("C", "CB1", None, has_self_review=False, absent=True),
    ]
    found = by_rule(check("366/43", members, results), "no_self_review")
    assert [(f.member_id, f.severity) for f in found] == [("A", "error")]


def test_absent_member_without_result_is_a_supplement_notice():
    members = [member("A", "CB1"), member("B", "CB1")]
    results = [result("A", "CB1", None, absent=True), result("B", "CB1", "HTNV", absent=True)]
    [finding] = by_rule(check("124/25", members, results), "absent_pending")
    assert (finding.member_id, finding.severity) == ("A", "info")
    assert "bổ sung sau" in finding.message


def test_invalid_level_is_reported_and_other_rules_do_not_crash():
    members = [member("A", "CB1", positions=("bi_thu",))]
    results = [result("A", "CB1", "Giỏi", sick_leave_months=5.0, score=99.0)]
    for code in ("132/21", "124/25", "366/43"):
        found = check(code, members, results, [OrgResult("CB1", "HTTNV", "DB01", False)])
        assert [(f.rule, f.data) for f in found] == [("invalid_level", {"self_level": "Giỏi", "final_level": "Giỏi"})]


def test_result_for_unknown_member_is_reported():
    [finding] = by_rule(check("124/25", [], [result("Z9", "CB2", "HTTNV")]), "unknown_member")
    assert (finding.unit_code, finding.member_id, finding.severity) == ("CB2", "Z9", "warning")


# --------------------------------------------------------------------------- sick leave (132/21 only)


def test_sick_leave_ceiling_in_132_21():
    members = [member(m, "CB1") for m in ("A", "B", "C", "D")]
    results = [
        result("A", "CB1", "HTTNV", sick_leave_months=3.0),  # ≥3 months and above HTNV: error
        result("B", "CB1", "HTNV", sick_leave_months=5.0),  # at the ceiling: fine
        result("C", "CB1", "HTXSNV", sick_leave_months=2.5),  # under 3 months: fine
        result("D", "CB1", None, proposed="HTTNV", sick_leave_months=4.0),  # proposal only: warning
    ]
    found = by_rule(check("132/21", members, results), "sick_leave_ceiling")
    assert [(f.member_id, f.severity) for f in found] == [("A", "error"), ("D", "warning")]
    assert "nghỉ ốm 3 tháng" in found[0].message and found[0].regulation.startswith("Quy định 132-QĐ/TW")
    assert by_rule(check("124/25", members, results), "sick_leave_ceiling") == []
    assert by_rule(check("366/43", members, results), "sick_leave_ceiling") == []


# --------------------------------------------------------------------------- scores (366/43)


def test_score_bands():
    rs = get_rule_set("366/43")
    assert [rs.score_band(s) for s in (100, 90, 89.99, 70, 69.5, 50, 49.9, 0)] == [
        "HTXSNV", "HTXSNV", "HTTNV", "HTTNV", "HTNV", "HTNV", "KHTNV", "KHTNV"
    ]
    assert rs.score_band(None) is None
    assert get_rule_set("124/25").score_band(95) is None


def test_score_rules_in_366_43():
    members = [member(m, "CB1") for m in "ABCDEF"]
    results = [
        result("A", "CB1", "HTXSNV", score=85.5),  # band HTTNV: above the band → error
        result("B", "CB1", "HTTNV", score=92.0),  # ≥90 but outside the 20% quota → allowed
        result("C", "CB1", "HTNV", score=75.0),  # band HTTNV: below the band → error
        result("D", "CB1", "HTTNV", score=None),  # no score → error
        result("E", "CB1", "KHTNV", score=80.0, disciplined=True),  # discipline wins over score
        result("F", "CB1", "HTNV", score=50.0),  # exactly on the band
    ]
    found = check("366/43", members, results)
    assert [(f.member_id, f.data["band"]) for f in by_rule(found, "score_band")] == [("A", "HTTNV"), ("C", "HTTNV")]
    assert [f.member_id for f in by_rule(found, "score_missing")] == ["D"]
    assert "đạt 85,5 điểm" in by_rule(found, "score_band")[0].message  # the Vietnamese decimal comma
    assert by_rule(check("124/25", members, results), "score_missing") == []


# --------------------------------------------------------------------------- overrides


def test_override_marks_the_finding():
    members, results = cap_members(10, 3)
    at = dt.datetime(2023, 12, 10, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    overrides = [
        Override("cap_members:DB01:", "Nguyễn Văn Tổ Chức", "Ban Thường vụ đồng ý theo Tờ trình 12", at),
        Override("cap_members:DB01:", "Người cũ", "ý kiến trước", at - dt.timedelta(days=1)),
    ]
    [finding] = by_rule(check("124/25", members, results, overrides=overrides), "cap_members")
    assert finding.overridden is not None and finding.overridden.by == "Nguyễn Văn Tổ Chức"
    assert finding.is_breach is False
    assert finding.to_dict()["overridden"] == {
        "by": "Nguyễn Văn Tổ Chức", "reason": "Ban Thường vụ đồng ý theo Tờ trình 12", "at": at.isoformat()
    }


def _granted(key, data, days=0):
    at = dt.datetime(2023, 12, 10, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=7))) + dt.timedelta(days=days)
    return Override(key, "Nguyễn Văn Tổ Chức", "Ban Thường vụ cho phép vượt 1 trường hợp", at, data)


def test_a_cap_override_holds_while_the_excess_is_no_larger_than_approved():
    approved = [_granted("cap_members:DB01:", {"htxsnv": 3, "httnv": 10, "max_allowed": 2})]  # 1 over
    [within] = by_rule(check("124/25", *cap_members(12, 3), overrides=approved), "cap_members")  # 3 on 12: still 1 over
    assert within.overridden is not None and not within.is_breach
    [past] = by_rule(check("124/25", *cap_members(10, 5), overrides=approved), "cap_members")  # 5 on 10: 3 over
    assert past.overridden is None and past.is_breach
    assert past.message == (
        "Có 5 đảng viên HTXSNV trên 10 HTTNV; tối đa được 2 (20%) tại Đảng bộ Sở Công Thương (DB01), vượt 3. "
        "Chấp thuận của Nguyễn Văn Tổ Chức lúc 10/12/2023 09:30 (Ban Thường vụ cho phép vượt 1 trường hợp) "
        "chỉ áp dụng cho số liệu khi đó; số liệu đã thay đổi nên cần xem xét, chấp thuận lại."
    )
    # Approved again for the new numbers: the newest approval that covers them holds.
    again = [*approved, _granted("cap_members:DB01:", {"htxsnv": 5, "httnv": 10, "max_allowed": 2}, days=1)]
    [now_covered] = by_rule(check("124/25", *cap_members(10, 5), overrides=again), "cap_members")
    assert now_covered.overridden == again[1]
    # Granted before overrides kept their numbers: holds as it did.
    [legacy] = by_rule(check("124/25", *cap_members(10, 5), overrides=[_granted("cap_members:DB01:", None)]), "cap_members")
    assert legacy.overridden is not None


def test_a_member_finding_override_holds_for_the_level_it_was_granted_on():
    members = [member("A", "CB1")]
    approved = [_granted("disciplined_member:CB1:A", {"level": "HTNV", "required": "KHTNV"})]
    [same] = check("124/25", members, [result("A", "CB1", "HTNV", disciplined=True)], overrides=approved)
    assert same.rule == "disciplined_member" and same.overridden is not None
    [other] = check("124/25", members, [result("A", "CB1", "HTTNV", disciplined=True)], overrides=approved)
    assert other.overridden is None and other.is_breach and "chấp thuận lại" in other.message


def test_finding_key_is_stable():
    f = Finding("disciplined_member", "error", "CB1", "A", "m", "r", {})
    assert f.key == "disciplined_member:CB1:A"
    assert Finding("cap_members", "error", "DB01", None, "m", "r", {}).key == "cap_members:DB01:"


def test_findings_sorted_and_every_rule_set_composes_common_rules():
    sets = {code: get_rule_set(code) for code in ("132/21", "124/25", "366/43")}
    common = set(sets["124/25"].member_rules)
    assert common <= set(sets["132/21"].member_rules) and common <= set(sets["366/43"].member_rules)
    assert sets["132/21"].group_rules == sets["124/25"].group_rules == sets["366/43"].group_rules
    members, results = cap_members(4, 2)
    results.append(result("ZZ", "CB2", "HTTNV"))
    keys = [f.key for f in check("132/21", members, results)]
    assert keys == sorted(keys)


def test_consolidation_input_has_rule_set_code():
    inp = ConsolidationInput(base_tree(), (), (), (), "124/25", EVAL)
    assert get_rule_set(inp.rule_set).name.startswith("Quy định 124-QĐ/TW")


def test_cycle_in_tree_is_rejected():
    units = (UnitNode("A", "A", "dang_bo_co_so", "B"), UnitNode("B", "B", "chi_bo_truc_thuoc", "A"))
    with pytest.raises(ValueError, match="chu trình"):
        build_context(get_rule_set("124/25"), units, (), (), (), EVAL)


def test_a_score_is_shown_with_every_digit_it_was_given():
    """89,99999 is in the HTTNV band: shown as "90" the finding contradicted itself."""
    from kiemdiem.tabular import format_decimal  # noqa: PLC0415

    assert [format_decimal(v) for v in (89.99999, 49.9999999, 85.5, 90.0, 100, 0.1 + 0.2)] == [
        "89,99999", "49,9999999", "85,5", "90", "100", "0,3",
    ]
